"""The batch engine, `meshdream batch` and `scripts/batch.py` (bpy as a module, and the real Blender program when
it is installed), on real meshes with the built-in model and tiny settings: 2 views at 64 px, 64² texture, 3 steps.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.batch import DONE, FAILED, SKIPPED, BatchItem, collect_items, read_jobs, run_batch
from meshdream.cli import main
from meshdream.errors import InvalidParameterError
from meshdream.progress import CancelToken
from PIL import Image

from tests.conftest import BUNDLED, blender_env

ROOT = Path(__file__).resolve().parents[2]
TINY = {"n_views": 2, "view_resolution": 64, "texture_size": 64, "steps": 3}
TINY_ARGS = ["--views", "2", "--view-resolution", "64", "--texture-size", "64", "--steps", "3"]
KEYS = {"input", "output", "status", "seconds", "attempts", "error"}


@pytest.fixture(scope="module")
def generator():
    return meshdream.load_generator("builtin")


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    """spot and suzanne (bundled with the core) plus an OBJ that holds no mesh."""
    folder = tmp_path_factory.mktemp("meshes")
    for name in ("spot.obj", "suzanne.obj"):
        shutil.copy(BUNDLED / name, folder / name)
    (folder / "broken.obj").write_text("this is not a mesh\nv 1 2\n")
    (folder / "notes.txt").write_text("not a mesh file: ignored")
    return folder


@pytest.fixture(scope="module")
def pair(meshes, tmp_path_factory):
    """A smaller folder for the slower script runs: suzanne and the corrupt file."""
    folder = tmp_path_factory.mktemp("pair")
    for name in ("suzanne.obj", "broken.obj"):
        shutil.copy(meshes / name, folder / name)
    return folder


def summary(out: Path) -> dict:
    data = json.loads((out / "summary.json").read_text())
    assert all(set(i) - {"maps"} == KEYS for i in data["items"])  # "maps": pbr items only
    return data


def by_name(data: dict) -> dict:
    return {Path(i["output"]).name: i for i in data["items"]}


def assert_textured_glb(path: Path, size: int = 64) -> None:
    scene = trimesh.load(str(path))
    mesh = next(iter(scene.geometry.values())) if isinstance(scene, trimesh.Scene) else scene
    image = mesh.visual.material.baseColorTexture
    assert len(mesh.faces) > 0 and image.size == (size, size)
    assert np.asarray(image.convert("RGB"), np.float32).std() > 1  # not one flat colour
    assert Image.open(path.with_suffix(".png")).size == (size, size)


@pytest.fixture(scope="module")
def first_run(meshes, generator, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    report = run_batch(collect_items([meshes], "red brick", TINY), out, generator=generator)
    return out, report


def test_folder_textures_good_meshes_and_records_the_corrupt_one(first_run):
    out, report = first_run
    assert not report.cancelled and report.count(DONE) == 2 and report.failed == 1
    data = summary(out)
    assert data["state"] == "finished" and (data["done"], data["failed"], data["total"]) == (2, 1, 3)
    items = by_name(data)
    for name in ("spot.glb", "suzanne.glb"):
        assert items[name]["status"] == DONE and items[name]["attempts"] == 1 and items[name]["error"] is None
        assert Path(items[name]["output"]) == out / name and items[name]["seconds"] > 0
        assert_textured_glb(out / name)
    broken = items["broken.glb"]
    assert broken["status"] == FAILED and broken["input"].endswith("broken.obj")
    assert "broken.obj" in broken["error"] and "\n" not in broken["error"] and "Traceback" not in broken["error"]
    assert not (out / "broken.glb").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files or folders left


def test_rerun_skips_finished_items(first_run, meshes, generator):
    out, _ = first_run
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.glb")}
    good = collect_items([meshes / "spot.obj", meshes / "suzanne.obj"], "red brick", TINY)
    report = run_batch(good, out, model="/no/such/model")  # all done: the model is never loaded
    assert [r.status for r in report.results] == [SKIPPED, SKIPPED]
    report = run_batch(collect_items([meshes], "red brick", TINY), out, generator=generator, retries=2)
    items = by_name(summary(out))
    assert [items[n]["status"] for n in ("spot.glb", "suzanne.glb", "broken.glb")] == [SKIPPED, SKIPPED, FAILED]
    assert items["broken.glb"]["attempts"] == 1  # the mesh's own error is not retried: it would fail again
    assert report.count(SKIPPED) == 2 and {p.name: p.stat().st_mtime_ns for p in out.glob("*.glb")} == stamps


def test_cancel_mid_batch_keeps_finished_items_and_resumes(meshes, generator, tmp_path):
    items = collect_items([meshes / "spot.obj", meshes / "suzanne.obj"], "oak wood", TINY)
    token = CancelToken()

    def progress(p):
        if p.step is not None and p.item.output == "suzanne.glb":
            token.cancel()  # the second item has started: it must stop at its next step

    report = run_batch(items, tmp_path, generator=generator, progress=progress, cancel=token)
    assert report.cancelled and [r.status for r in report.results] == [DONE]
    data = summary(tmp_path)
    assert data["state"] == "cancelled" and list(by_name(data)) == ["spot.glb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spot.glb", "spot.png", "summary.json"]
    report = run_batch(items, tmp_path, generator=generator)
    assert [r.status for r in report.results] == [SKIPPED, DONE]
    assert_textured_glb(tmp_path / "suzanne.glb")


def test_jobs_file_with_per_job_prompts_and_settings(meshes, generator, tmp_path):
    (tmp_path / "meshes").mkdir()
    shutil.copy(meshes / "suzanne.obj", tmp_path / "meshes")
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        {"input": str(meshes / "spot.obj"), "prompt": "blue marble", "output": "cow.glb", "settings": {"seed": 3}},
        "# a comment",
        {"input": "meshes/suzanne.obj", "settings": {"texture_size": 32}, "source": "monkey"},  # next to the file
    ]
    jobs.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    items = collect_items(jobs=jobs, prompt="red brick", settings=TINY)
    assert [(i.prompt, i.output, i.source) for i in items] == [
        ("blue marble", "cow.glb", None),
        ("red brick", "suzanne.glb", "monkey"),
    ]
    assert items[0].settings == {**TINY, "seed": 3} and items[1].settings["texture_size"] == 32
    out = tmp_path / "out"
    report = run_batch(items, out, generator=generator)
    assert report.failed == 0
    assert_textured_glb(out / "cow.glb")
    assert_textured_glb(out / "suzanne.glb", size=32)
    assert by_name(summary(out))["suzanne.glb"]["input"] == "monkey"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"input": "a.obj", "settings": {"view": 4}}', "unknown setting 'view'"),
        ('{"input": "a.obj", "colour": "red"}', "unknown key(s) colour"),
        ('{"input": "a.obj", "output": "../a.glb"}', "inside the out folder"),
        ('{"prompt": "red"}', 'at least "input"'),
        ("{input: a.obj}", "is not JSON"),
        ('{"input": "a.glb", "uv_set": -1}', "uv_set must be a UV set index"),
        ('{"input": "a.obj", "kind": "paint"}', "kind 'paint' is unknown"),
        ('{"input": "a.obj", "kind": "upscale"}', 'needs "texture"'),
        ('{"input": "a.obj", "texture": "t.png"}', 'set "kind"'),
        (
            '{"input": "a.obj", "kind": "upscale", "texture": "t.png", "settings": {"strength": 1}}',
            "unknown setting 'strength'; known for upscale jobs",
        ),
        ('{"input": "a.obj", "kind": "restyle", "texture": "t.png", "unwrap": "auto"}', "keeps the mesh's own UVs"),
        ('{"input": "a.obj", "kind": "upscale", "texture": "t.png", "output": "a.glb"}', "must be a .png name"),
    ],
)
def test_bad_jobs_lines_are_one_line_errors_naming_the_line(tmp_path, line, message):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"input": "b.obj"}\n' + line + "\n")
    with pytest.raises(InvalidParameterError, match="jobs.jsonl line 2") as info:
        read_jobs(jobs, prompt="red")
    assert message in str(info.value)


def test_restyle_and_upscale_jobs_write_new_files_never_over_their_inputs(tmp_path, capsys):
    """Through `meshdream batch --jobs`: the command line's texture settings reach each kind where it takes them."""
    shutil.copy(BUNDLED / "spot.obj", tmp_path / "spot.obj")
    y, x = np.mgrid[:64, :64] // 8
    texture = np.stack([np.where((x + y) % 2, 220, 40), x * 32, np.full_like(x, 90)], -1).astype(np.uint8)
    Image.fromarray(texture).save(tmp_path / "spot_texture.png")
    source = (tmp_path / "spot_texture.png").read_bytes()
    restyle = {"kind": "restyle", "input": "spot.obj", "texture": "spot_texture.png", "prompt": "blue tiles"}
    upscale = {"kind": "upscale", "input": "spot.obj", "texture": "spot_texture.png"}
    lines = [
        {**restyle, "settings": {"strength": 0.4}},
        {**upscale, "settings": {"scale": 2, "upscaler": "lanczos"}},
        {**upscale, "settings": {"upscaler": "lanczos"}, "output": "spot_texture.png"},  # the input itself
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items = collect_items(jobs=jobs, settings={"strategy": "sync", **TINY})
    assert [(i.kind, i.output, i.unwrap) for i in items] == [
        ("restyle", "spot_restyled.glb", "never"),
        ("upscale", "spot_texture_x2.png", "never"),
        ("upscale", "spot_texture.png", "never"),
    ]
    assert items[0].settings == {"strength": 0.4, **TINY}
    assert items[1].settings == {"scale": 2, "upscaler": "lanczos", "steps": 3} and items[1].prompt == ""

    assert main(["batch", "--jobs", str(jobs), "-o", str(tmp_path), *TINY_ARGS]) == 1
    assert "would replace the input" in capsys.readouterr().err
    items = by_name(summary(tmp_path))
    assert [items[n]["status"] for n in ("spot_restyled.glb", "spot_texture_x2.png", "spot_texture.png")] == [
        DONE,
        DONE,
        FAILED,
    ]
    assert (tmp_path / "spot_texture.png").read_bytes() == source
    assert_textured_glb(tmp_path / "spot_restyled.glb")
    mesh = meshdream.load_mesh(tmp_path / "spot.obj", unwrap="never")
    expected = meshdream.upscale_texture(mesh, texture, scale=2, upscaler="lanczos")
    upscaled = np.asarray(Image.open(tmp_path / "spot_texture_x2.png"))
    assert np.abs(upscaled.astype(int) - np.round(expected * 255)).max() <= 1


def test_pbr_items_write_a_png_per_map_and_the_summary_names_them(tmp_path, capsys):
    """Issue 27: `meshdream batch --pbr`: a GLB with its maps plus <stem>_<map>.png beside it; an OBJ output gets
    the maps save_textured writes beside it; summary.json names every map file."""
    for name in ("spot.obj", "suzanne.obj"):
        shutil.copy(BUNDLED / name, tmp_path / name)
    jobs = tmp_path / "jobs.jsonl"
    lines = [{"input": "spot.obj"}, {"input": "suzanne.obj", "output": "suzanne.obj.d/suzanne.obj"}]
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    assert main(["batch", "--jobs", str(jobs), "--prompt", "red brick", "-o", str(out), "--pbr", *TINY_ARGS]) == 0
    items = by_name(summary(out))
    maps = ("base_color", "roughness", "metallic", "normal")
    for name, folder in (("spot.glb", out), ("suzanne.obj", out / "suzanne.obj.d")):
        stem = Path(name).stem
        assert items[name]["status"] == DONE
        expected = {m: str(folder / (stem + ("" if m == "base_color" else "_" + m) + ".png")) for m in maps}
        assert items[name]["maps"] == expected
        for m, path in expected.items():
            image = np.asarray(Image.open(path))
            assert image.shape[:2] == (64, 64) and image.ndim == (3 if m in ("base_color", "normal") else 2)
    assert_textured_glb(out / "spot.glb")
    scene = trimesh.load(str(out / "spot.glb"))
    mesh = next(iter(scene.geometry.values()))
    assert mesh.visual.material.normalTexture is not None
    assert mesh.visual.material.metallicRoughnessTexture is not None
    mtl = (out / "suzanne.obj.d" / "suzanne.mtl").read_text()
    assert "map_Pr suzanne_roughness.png" in mtl and "norm suzanne_normal.png" in mtl
    # Without --pbr an item's summary line is as it always was.
    plain = ["batch", str(tmp_path / "spot.obj"), "--prompt", "oak", "-o", str(tmp_path / "plain")]
    assert main([*plain, *TINY_ARGS]) == 0
    assert "maps" not in summary(tmp_path / "plain")["items"][0]
    assert not list((tmp_path / "plain").glob("*_roughness.png"))


def test_uv_set_from_the_jobs_file_and_the_command_line(generator, tmp_path):
    from tests.core.test_uv_sets import _two_uv_sets, _uv1, _uv_by_position

    glb, _ = _two_uv_sets(tmp_path)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"input": "grid.glb", "uv_set": 1}) + "\n" + json.dumps({"input": "grid.glb"}) + "\n")
    items = collect_items([glb], "red brick", TINY, jobs=jobs, uv_set=1)
    assert [i.uv_set for i in items] == [1, 1, 1]
    assert [i.uv_set for i in read_jobs(jobs, "red brick")] == [1, 0]
    report = run_batch(items[:1], tmp_path / "out", generator=generator)
    assert report.failed == 0
    uv, xy = _uv_by_position(meshdream.load_mesh(tmp_path / "out" / items[0].output))
    np.testing.assert_allclose(uv, _uv1(xy), atol=1e-5)


def test_outputs_of_same_named_inputs_do_not_clash(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(BUNDLED / "spot.obj", tmp_path / sub / "spot.obj")
    items = collect_items([tmp_path / "a", tmp_path / "b"], "red")
    assert [i.output for i in items] == ["spot.glb", "spot_1.glb"]
    assert isinstance(items[0], BatchItem)


def run(*args, **kwargs):
    """A child process (Blender or Python) with the Blender program's environment (see blender_env)."""
    return subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=300, env=blender_env(), **kwargs)


def test_cli_exit_status(meshes, tmp_path, capsys):
    """`meshdream batch` (the script tests below run it as `python -m meshdream batch` in a child process)."""
    out = tmp_path / "out"
    assert main(["batch", str(meshes), "--prompt", "red brick", "-o", str(out), *TINY_ARGS]) == 1
    captured = capsys.readouterr()
    assert "broken.obj -> broken.glb: FAILED: 'broken.obj' holds no triangles" in captured.err
    assert "Batch: 2 done, 1 failed, 0 skipped of 3" in captured.out and "Traceback" not in captured.err
    assert_textured_glb(out / "spot.glb")
    assert main(["batch", str(meshes / "spot.obj"), "--prompt", "red brick", "--out", str(out)]) == 0  # skipped
    assert main(["batch", "--prompt", "red", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("meshdream: error: Nothing to do: no mesh files in the inputs; "
                                                    "pass mesh files, folders or --jobs.")  # fmt: skip


def run_child_batch(out: Path, meshes: Path, progress_body: str) -> subprocess.CompletedProcess:
    """`run_batch` of spot then suzanne into `out` in a child Python, whose progress callback runs `progress_body`
    (with `p`, `out` and `suzanne_started`: true at suzanne's stages) to break it at a chosen point."""
    script = f"""
import os, resource, signal, sys
from pathlib import Path
from meshdream.batch import collect_items, run_batch
out = Path({str(out)!r})
items = collect_items([{str(meshes / "spot.obj")!r}, {str(meshes / "suzanne.obj")!r}], "red brick", {TINY!r})
def progress(p):
    suzanne_started = p.step is not None and p.item.output == "suzanne.glb"
    {progress_body}
run_batch(items, out, progress=progress)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "core"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)


def assert_each_done_once(out: Path, statuses: dict) -> None:
    """summary.json lists each output once with `statuses`, the outputs load, and no temporary is left."""
    data = summary(out)
    assert [Path(i["output"]).name for i in data["items"]] == list(statuses)
    assert {n: i["status"] for n, i in by_name(data).items()} == statuses
    for name in statuses:
        assert_textured_glb(out / name)
    pngs = [Path(name).with_suffix(".png").name for name in statuses]
    assert sorted(p.name for p in out.iterdir()) == sorted([*statuses, *pngs, "summary.json"])


def test_a_run_that_dies_between_placing_an_output_and_recording_it(meshes, tmp_path):
    """The issue's kill between moving suzanne.glb into place and rewriting summary.json: the re-run refused
    suzanne ("exists but no earlier batch made it"). Here the summary write itself fails at that point (summary.json
    became a folder while suzanne was textured) and the child dies with it; summary.json is then put back as the
    killed run left it (spot recorded). The re-run records suzanne as done by that run, redoes nothing (its model
    cannot even load) and leaves no temporary."""
    out = tmp_path / "out"
    body = """if suzanne_started and not (out / "summary.json").is_dir():
        os.replace(out / "summary.json", out / "kept.json")
        (out / "summary.json").mkdir()"""
    r = run_child_batch(out, meshes, body)
    assert r.returncode != 0 and "Could not write" in r.stderr and "summary.json" in r.stderr, r.stderr
    (out / "summary.json").rmdir()
    os.replace(out / "kept.json", out / "summary.json")
    assert list(by_name(summary(out))) == ["spot.glb"] and (out / "suzanne.glb").exists()
    placed = (out / "suzanne.glb").stat().st_mtime_ns
    items = collect_items([meshes / "spot.obj", meshes / "suzanne.obj"], "red brick", TINY)
    report = run_batch(items, out, model="/no/such/model")
    assert [r.status for r in report.results] == [SKIPPED, SKIPPED] and not report.cancelled
    assert_each_done_once(out, {"spot.glb": SKIPPED, "suzanne.glb": SKIPPED})
    assert (out / "suzanne.glb").stat().st_mtime_ns == placed


def test_a_run_killed_while_writing_leaves_nothing_the_rerun_trips_on(meshes, tmp_path):
    """Killed by the kernel mid-write (a file size limit set once suzanne starts: SIGXFSZ as the GLB grows past
    16 KB), the run leaves suzanne's .partial-* folder and no suzanne.glb; the re-run removes the folder, skips spot,
    does suzanne once."""
    out = tmp_path / "out"
    body = """if suzanne_started:
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it (writes fail with EFBIG): the kernel kills
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))"""
    r = run_child_batch(out, meshes, body)
    assert r.returncode == -signal.SIGXFSZ, r.stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".partial-")] and not (out / "suzanne.glb").exists()
    items = collect_items([meshes / "spot.obj", meshes / "suzanne.obj"], "red brick", TINY)
    report = run_batch(items, out)
    assert [r.status for r in report.results] == [SKIPPED, DONE]
    assert_each_done_once(out, {"spot.glb": SKIPPED, "suzanne.glb": DONE})


# --- scripts/batch.py ------------------------------------------------------------------------------------------


def blender_scene(path: Path, python: list) -> Path:
    """A .blend made by `python`: Suzanne (its own UV map and a user material), a cube without UVs, and a mesh
    object without faces (a failed item)."""
    code = f"""
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_monkey_add()
bpy.context.active_object.name = "Suzanne"
bpy.context.active_object.data.materials.append(bpy.data.materials.new("UserMat"))
bpy.ops.mesh.primitive_cube_add(location=(3, 0, 0))
box = bpy.context.active_object
box.name = "Box"
box.data.uv_layers.remove(box.data.uv_layers[0])
bpy.context.collection.objects.link(bpy.data.objects.new("Nothing", bpy.data.meshes.new("Nothing")))
bpy.ops.wm.save_as_mainfile(filepath={str(path)!r})
"""
    r = run(*python, code)
    assert path.exists(), r.stderr
    return path


INSPECT = """
import bpy, json, sys
bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])
print("RESULT", json.dumps({
    "objects": {o.name: [[s.material.name for s in o.material_slots], [u.name for u in o.data.uv_layers]]
                for o in bpy.data.objects},
    "images": {i.name: [list(i.size), i.packed_file is not None] for i in bpy.data.images},
    "materials": sorted(m.name for m in bpy.data.materials),
}))
"""


def inspect_blend(path: Path, python: list) -> dict:
    r = run(*python, INSPECT, "--", path)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, r.stderr
    return json.loads(line[7:])


def check_scene_result(out: Path, blend: Path, python: list) -> None:
    items = by_name(summary(out))
    assert {n: i["status"] for n, i in items.items()} == {"Suzanne.glb": DONE, "Box.glb": DONE, "Nothing.glb": FAILED}
    assert "holds no" in items["Nothing.glb"]["error"]
    assert items["Suzanne.glb"]["input"] == f"{blend.name}:Suzanne"
    assert_textured_glb(out / "Suzanne.glb")
    saved = inspect_blend(out / f"{blend.stem}_textured.blend", python)
    assert saved["objects"]["Suzanne"] == [["UserMat MeshDream"], ["UVMap"]]  # the user's UV map, a material copy
    assert saved["objects"]["Box"] == [["MeshDream Box"], ["MeshDream UV"]]  # a new UV map and material
    assert saved["objects"]["Nothing"] == [[], []] and "UserMat" in saved["materials"]
    assert all(size == [64, 64] and packed for size, packed in saved["images"].values())
    original = inspect_blend(blend, python)
    assert original["objects"]["Suzanne"] == [["UserMat"], ["UVMap"]] and original["objects"]["Box"][1] == []


@pytest.fixture(scope="module")
def bpy_python():
    pytest.importorskip("bpy")
    return [sys.executable, "-c"]


def test_script_under_bpy_module_textures_files(pair, tmp_path, bpy_python):
    out = tmp_path / "out"
    cmd = [sys.executable, ROOT / "scripts" / "batch.py", "--", "--input", pair, "--prompt", "red brick"]
    r = run(*cmd, "--out", out, *TINY_ARGS, "--python", sys.executable)
    assert r.returncode == 1, r.stderr
    items = by_name(summary(out))
    assert [items[n]["status"] for n in ("suzanne.glb", "broken.glb")] == [DONE, FAILED]
    r = run(*cmd, "--out", out, *TINY_ARGS, "--python", "/nonexistent/python")
    assert r.returncode == 2 and "batch.py: error: no Python at '/nonexistent/python'" in r.stderr


def test_script_under_bpy_module_textures_the_scene_keeps_going_and_saves_it(tmp_path, bpy_python):
    blend = blender_scene(tmp_path / "scene.blend", bpy_python)
    out = tmp_path / "out"
    script = ROOT / "scripts" / "batch.py"
    r = run(sys.executable, script, "--blend", blend, "--prompt", "red brick", "--out", out, *TINY_ARGS, "--save-blend")
    assert r.returncode == 1, r.stderr  # the object without faces failed; the others are saved textured
    check_scene_result(out, blend, bpy_python)


@pytest.mark.skipif(
    not shutil.which("blender"), reason="the Blender program is not installed (apt-get install blender)"
)
def test_real_blender_runs_the_script(pair, tmp_path):
    """`blender -b [scene.blend] --python-exit-code 1 -P scripts/batch.py -- ...` exactly as a user types it."""
    xvfb = [shutil.which("xvfb-run"), "-a"] if shutil.which("xvfb-run") and not os.environ.get("DISPLAY") else []

    def blender(*args, blend=()):
        return [*xvfb, "blender", "-b", *blend, "--factory-startup", "--python-exit-code", "1", *args]

    script = [
        "-P",
        ROOT / "scripts" / "batch.py",
        "--",
        "--prompt",
        "red brick",
        *TINY_ARGS,
        "--python",
        sys.executable,
    ]
    out = tmp_path / "files"
    r = run(*blender(*script, "--input", pair, "--out", out))
    assert r.returncode == 1, r.stdout + r.stderr
    items = by_name(summary(out))
    assert [items[n]["status"] for n in ("suzanne.glb", "broken.glb")] == [DONE, FAILED]
    r = run(*blender(*script, "--input", pair / "suzanne.obj", "--out", out))
    assert r.returncode == 0 and "0 done, 0 failed, 1 skipped of 1" in r.stdout, r.stdout + r.stderr

    # A scene made by this Blender (3.4 cannot read files saved by bpy 5), textured and saved as a copy.
    blend = blender_scene(tmp_path / "scene.blend", blender("--python-expr"))
    out = tmp_path / "scene"
    r = run(*blender(*script, "--out", out, "--save-blend", blend=[blend]))
    assert r.returncode == 1, r.stdout + r.stderr
    check_scene_result(out, blend, blender("--python-expr"))


def test_create_jobs_make_closed_textured_meshes_from_their_prompts(tmp_path, capsys):
    """Issue 28: jobs.jsonl lines of kind "create" have a prompt and no input mesh; outputs are named after it."""
    from meshdream.shapes import is_closed

    lines = [
        {"kind": "create", "prompt": "a tall oak chair", "settings": {"shape_steps": 6, "face_budget": 3000}},
        {"kind": "create", "prompt": "a red mug", "output": "mugs/mug.obj", "settings": {"shape_steps": 6}},
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items = read_jobs(jobs, settings=TINY)
    assert [(i.kind, i.input, i.output, i.source) for i in items] == [
        ("create", "", "a_tall_oak_chair.glb", "create: a tall oak chair"),
        ("create", "", "mugs/mug.obj", "create: a red mug"),
    ]
    assert items[0].settings == {"shape_steps": 6, "face_budget": 3000, **TINY}
    out = tmp_path / "out"
    assert main(["batch", "--jobs", str(jobs), "-o", str(out), *TINY_ARGS]) == 0
    assert "Batch: 2 done" in capsys.readouterr().out
    items = by_name(summary(out))
    assert items["a_tall_oak_chair.glb"]["input"] == "create: a tall oak chair"
    assert_textured_glb(out / "a_tall_oak_chair.glb")
    chair = meshdream.load_mesh(out / "a_tall_oak_chair.glb")
    assert is_closed(chair) and len(chair.faces) <= 3000
    assert (out / "mugs" / "mug.obj").exists() and (out / "mugs" / "mug.png").exists()
    assert main(["batch", "--jobs", str(jobs), "-o", str(out)]) == 0  # done already: skipped
    assert "2 skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"kind": "create", "input": "a.obj", "prompt": "a chair"}', "leave out 'input'"),
        ('{"kind": "create"}', "no prompt"),
        ('{"kind": "create", "prompt": "a chair", "settings": {"strength": 1}}', "unknown setting 'strength'"),
    ],
)
def test_bad_create_lines_are_one_line_errors(tmp_path, line, message):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(line + "\n")
    with pytest.raises(InvalidParameterError, match=message):
        read_jobs(jobs)
