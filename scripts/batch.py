"""Headless batch texturing from Blender: mesh files, or every mesh object of the open .blend.

    blender -b [scene.blend] --python-exit-code 1 -P scripts/batch.py -- --out DIR --prompt "..."
            [--input DIR_OR_FILES ...] [--jobs jobs.jsonl] [--model SPEC] [--views N] [--save-blend] [--python PATH]
    python scripts/batch.py [--blend scene.blend] --out DIR ...      (a Python with `bpy` as a module)

Blender's own Python does not have the core (nor torch), so the work runs in `PYTHON -m meshdream batch`, a child
process of a Python that has MeshDream (--python; default: this repository's .venv, else python3); options this
script does not know (--steps, --texture-size, --view-resolution, --seed, --retries, --device, --overwrite, ...)
go to it unchanged. Without --input and --jobs, the scene's mesh objects are exported (evaluated, world space,
their active UV map, or a new Smart UV Project map) to temporary OBJ files and textured on their own UV maps.
A --jobs file may also hold "restyle" and "upscale" jobs on textures meshes already have (see
meshdream.batch.read_jobs). --save-blend then adds the results as new images and materials (copies of the objects'
own; files are imported as GLBs, upscaled PNGs stay in DIR) and saves DIR/<scene>_textured.blend; the opened
.blend is never written. The out folder gets the same summary.json as `meshdream batch`, done items are skipped
on a re-run, and the exit status is the command's:
0 all done or skipped, 1 some item failed, 2 bad arguments, 130 Ctrl-C (finished items stay).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bpy

ROOT = Path(__file__).resolve().parents[1]


def default_python() -> str:
    venv = ROOT / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return str(venv) if venv.exists() else (shutil.which("python3") or "python3")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's options (after Blender's `--`, or all of them under plain Python) and the rest, which go to
    `meshdream batch`."""
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    else:  # Blender's own arguments are not ours; under plain Python all of them are
        argv = argv[1:] if Path(argv[0]).resolve() == Path(__file__).resolve() else []
    p = argparse.ArgumentParser(
        prog="blender -b [scene.blend] -P scripts/batch.py --",
        description="Texture mesh files, or the open .blend's mesh objects, with MeshDream's batch engine.",
        epilog="Other options (--steps, --texture-size, --view-resolution, --seed, --retries, --overwrite, ...) "
        "are passed to `meshdream batch`.",
    )
    p.add_argument("--input", nargs="+", default=[], help="mesh files and folders (default: the scene's meshes)")
    p.add_argument("--jobs", help='jobs.jsonl, one {"input", "prompt", "settings", "output", "kind", ...} per line')
    p.add_argument("--prompt", help="prompt of every item (a job's own prompt wins)")
    p.add_argument("--out", required=True, help="output folder: one GLB + PNG per item, summary.json")
    p.add_argument("--model", help="builtin (default), a cached Hugging Face id, a folder or a .safetensors")
    p.add_argument("--views", type=int, help="views per mesh")
    p.add_argument("--save-blend", action="store_true", help="also save the textured scene to OUT")
    p.add_argument("--python", default=default_python(), help="a Python with MeshDream (default: %(default)s)")
    p.add_argument(
        "--blend", help="open this .blend first (for bpy as a module; the blender program takes it before -P)"
    )
    return p.parse_known_args(argv)


def fail(message: str, status: int = 2) -> None:
    print(f"batch.py: error: {message}", file=sys.stderr)
    sys.exit(status)


def scene_io():
    """The add-on's scene <-> arrays module, loaded from the source tree on its own (no add-on registration)."""
    spec = importlib.util.spec_from_file_location("meshdream_scene_io", ROOT / "blender_addon" / "scene_io.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_scene(io, folder: Path, prompt: str | None) -> tuple[Path, dict]:
    """Each mesh object of the scene as OBJ + one jobs.jsonl line; returns the jobs file and object -> (output,
    the UV map used, the UV map added or None)."""
    objects = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if not objects:
        fail("the scene has no mesh objects; open a .blend with meshes, or pass --input mesh files.")
    blend = Path(bpy.data.filepath).name or "untitled.blend"
    depsgraph = bpy.context.evaluated_depsgraph_get()
    lines, exported, taken = [], {}, set()
    for obj in objects:
        base = re.sub(r"[^\w.-]", "_", obj.name)
        stem, n = base, 1
        while stem.lower() in taken:
            stem, n = f"{base}_{n}", n + 1
        taken.add(stem.lower())
        uv_name, added = io.ensure_uv(obj) if obj.data.polygons else (None, None)
        if uv_name is None:  # no faces: an empty file, which the core reports as this item's error
            (folder / f"{stem}.obj").write_text("# no faces\n")
        else:
            io.export_obj(obj, depsgraph, uv_name, folder / f"{stem}.obj")
        job = {"input": f"{stem}.obj", "output": f"{stem}.glb", "source": f"{blend}:{obj.name}", "unwrap": "never"}
        if prompt:
            job["prompt"] = prompt
        lines.append(json.dumps(job))
        exported[obj.name] = (f"{stem}.glb", uv_name, added)
    jobs = folder / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return jobs, exported


def run_engine(python: str, args: list[str]) -> int:
    """`python -m meshdream batch ARGS`, its progress on this terminal. Ctrl-C reaches it too (same process
    group): it stops after the current step and keeps what finished, so this only waits for it."""
    process = subprocess.Popen([python, "-m", "meshdream", "batch", *args])
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def statuses(out: Path) -> dict[str, str]:
    """Output path (relative to `out`) -> status, from summary.json."""
    path = out / "summary.json"
    if not path.exists():
        return {}
    items = json.loads(path.read_text(encoding="utf-8"))["items"]
    return {Path(os.path.relpath(i["output"], out)).as_posix(): i["status"] for i in items}


def import_glb(path: Path) -> None:
    """A finished output as new objects named after it (the glTF importer brings its material and image)."""
    bpy.ops.import_scene.gltf(filepath=str(path))
    for obj in bpy.context.selected_objects:
        obj.name = path.stem


def save_blend(out: Path) -> Path:
    target = out / f"{Path(bpy.data.filepath).stem or 'batch'}_textured.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(target), copy=True)
    return target


def main(argv: list[str]) -> int:
    args, extra = parse(argv)
    if args.blend:
        bpy.ops.wm.open_mainfile(filepath=str(Path(args.blend).resolve()))
    python = shutil.which(args.python) or args.python
    if not Path(python).is_file():
        fail(f"no Python at '{args.python}'; pass --python /path/to/python where MeshDream is installed.")
    found = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('meshdream') is not None)"],
        capture_output=True,
        text=True,
    )
    if found.stdout.strip() != "True":
        fail(f"'{python}' has no MeshDream; install it there (`{python} -m pip install -e core`) or pass --python.")
    out = Path(args.out).resolve()
    forwarded = ["--out", str(out), *extra]
    for flag, value in (("--prompt", args.prompt), ("--model", args.model), ("--views", args.views)):
        if value is not None:
            forwarded += [flag, str(value)]
    scene_mode = not args.input and not args.jobs
    with tempfile.TemporaryDirectory(prefix="meshdream-batch-") as tmp:
        if scene_mode:
            io = scene_io()
            jobs, exported = export_scene(io, Path(tmp), args.prompt)
            status = run_engine(python, ["--jobs", str(jobs), *forwarded])
        else:
            jobs_args = ["--jobs", str(Path(args.jobs).resolve())] if args.jobs else []
            status = run_engine(python, [*[str(Path(i).resolve()) for i in args.input], *jobs_args, *forwarded])
    if status not in (0, 1) or not args.save_blend:
        return status
    finished = {name for name, s in statuses(out).items() if s in ("done", "skipped")}
    if scene_mode:
        for name, (output, uv_name, added) in exported.items():
            obj = bpy.data.objects[name]
            if output in finished:
                io.apply_texture(obj, (out / (Path(output).stem + ".png")).read_bytes(), uv_name, pack=True)
            elif added:
                io.remove_uv(obj, added)  # a failed object keeps the UV maps it had
    else:
        if not bpy.data.filepath:
            bpy.ops.wm.read_factory_settings(use_empty=True)  # not Blender's default cube, camera and light
        for name in sorted(finished):
            if name.lower().endswith(".glb"):
                import_glb(out / name)
    print(f"Saved {save_blend(out)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
