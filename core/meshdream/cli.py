"""The `meshdream` command line. Errors (MeshDream's own and any OSError, e.g. a full disk) print one line saying
what to fix (no traceback) and exit 2; Ctrl-C exits 130. Outputs are written whole or not at all (files.writing)."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import CancelledError, MeshDreamError
from .files import os_error_message, writing
from .generators.schedulers import SAMPLERS
from .jobs import Limits
from .presets import PRESETS


def _info(args) -> None:
    from .geometry import load_mesh, mesh_info

    mesh = load_mesh(args.mesh)
    meta = mesh_info(mesh)
    print(
        json.dumps(
            {
                "file": str(args.mesh),
                "vertices": len(mesh.vertices),
                "faces": len(mesh.faces),
                "uvs": "unwrapped by xatlas" if meta.unwrapped else "kept from the file",
                "watertight": bool(mesh.is_watertight),
                "to_normalized": meta.to_normalized.tolist(),
            },
            indent=2,
        )
    )


def _views(args) -> None:
    """Depth, normal and mask images of orbit views, plus the cameras: inputs for any depth-conditioned model."""
    from .geometry import load_mesh, orbit_cameras, render
    from .images import save_depth16, save_png

    mesh = load_mesh(args.mesh)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cameras = orbit_cameras(args.views, resolution=args.resolution, fov=args.fov, mesh=mesh)
    for k, cam in enumerate(cameras):
        maps = render(mesh, cam)
        save_depth16(maps.depth, out / f"view{k:02d}_depth.png")
        save_png(maps.normal * 0.5 + 0.5, out / f"view{k:02d}_normal.png")
        save_png(maps.mask.astype(float), out / f"view{k:02d}_mask.png")
    with writing(out / "cameras.json") as (temp,):  # last: the images it describes are in place
        temp.write_text(json.dumps([c.to_dict() for c in cameras], indent=1))
    print(f"Wrote {len(cameras)} views (depth, normal, mask) and cameras.json to {out}")


class _ProgressBar:
    """tqdm bar per stage, fed by MeshDream's progress callback."""

    def __init__(self) -> None:
        self._bar = None
        self._stage = None

    def __call__(self, p) -> None:
        from tqdm import tqdm

        if p.stage != self._stage:
            self.close()
            self._stage = p.stage
            self._bar = tqdm(total=p.total, desc=p.stage, unit="step", leave=False, file=sys.stderr)
        self._bar.total = p.total
        self._bar.n = p.step
        self._bar.set_postfix_str(p.message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextmanager
def _cancel_on_ctrl_c():
    """First Ctrl-C asks the running job to stop at its next step (nothing is written); a second one kills."""
    from .progress import CancelToken

    token = CancelToken()

    def handler(signum, frame):
        if token.cancelled:
            raise KeyboardInterrupt
        print("\nmeshdream: stopping after this step (Ctrl-C again to kill)...", file=sys.stderr)
        token.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _watched():
    """(progress bar, Ctrl-C cancel token) for one long call; the bar is closed however the call ends."""
    bar = _ProgressBar()
    with _cancel_on_ctrl_c() as token:
        try:
            yield bar, token
        finally:
            bar.close()


def _load_mesh(args):
    """The command's mesh (its --uv-set); unwrapping a large mesh shows a progress bar and stops on Ctrl-C."""
    from .geometry import load_mesh

    with _watched() as (bar, token):
        return load_mesh(args.mesh, uv_set=args.uv_set, progress=bar, cancel=token)


def _run(kind: str, **args):
    """A job kind's core function (meshdream.jobs.KINDS, as the server and batch run it) under a progress bar and
    Ctrl-C cancel."""
    from .jobs import KINDS

    with _watched() as (bar, token):
        return KINDS[kind].call(**args, progress=bar, cancel=token)


def _generator(spec, args):
    from .generators import load_generator

    return load_generator(
        spec,
        controlnet=getattr(args, "controlnet", None),
        base=getattr(args, "base", None),
        lora=getattr(args, "lora", None),
        sampler=getattr(args, "sampler", None),
        ip_adapter=getattr(args, "ip_adapter", None),
        device=args.device,
        memory=args.memory,
    )


def _refuse_existing(path: Path, overwrite: bool) -> None:
    from .errors import OutputExistsError

    if path.exists() and not overwrite:
        raise OutputExistsError(f"'{path}' already exists; choose another name or pass --overwrite.")


def _pbr(args) -> dict:
    """texture_mesh / restyle_texture's PBR settings from --pbr, --material-model and --delight / --no-delight;
    none without --pbr (the output is then exactly what it was without them)."""
    if not args.pbr:
        if args.material_model or args.delight is not None:
            from .errors import InvalidParameterError

            raise InvalidParameterError("--material-model and --delight / --no-delight need --pbr; add --pbr.")
        return {}
    return {"pbr": True, "material_model": args.material_model, "delight": args.delight}


def _maps(result) -> str:
    """The PBR maps a result holds besides its base colour, for the "Wrote ..." line (empty without pbr)."""
    names = [k for k in result.maps if k != "base_color"]
    return f", PBR: {', '.join(names)}" if names else ""


def _texture(args) -> None:
    from .geometry import save_textured
    from .images import contact_sheet, save_png

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)  # before minutes of work, not after
    mesh = _load_mesh(args)
    generator = _generator(args.model, args)
    inpainter = _generator(args.inpaint_model, args) if args.inpaint_model else None
    reference = None
    if args.reference:
        from .images import read_image

        reference = read_image(args.reference, what="reference image")
    result = _run(
        "texture",
        mesh=mesh,
        prompt=args.prompt,
        generator=generator,
        strategy=args.strategy,
        n_views=args.views,
        view_resolution=args.view_resolution,
        texture_size=args.texture_size,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        preset=args.preset,
        inpaint_generator=inpainter,
        reference_image=reference,
        **_pbr(args),
    )
    save_textured(mesh, result, out, overwrite=args.overwrite)  # its pages and PBR maps, if any
    if args.views_sheet:
        save_png(contact_sheet([img for _, img in result.views], columns=len(result.views)), Path(args.views_sheet))
    t = result.timings
    print(
        f"Wrote {out} ({args.strategy}, {len(result.views)} views, {len(result.texture)}² texture{_maps(result)}; "
        f"{t['total']:.1f} s: "
        f"model {t['model']:.1f} s, geometry {t['geometry']:.1f} s)"
    )
    if args.verbose:
        for stage, seconds in t.items():
            print(f"  {stage:14s} {seconds:8.3f} s")


def _restyle(args) -> None:
    from .geometry import save_textured
    from .images import read_image

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    mesh = _load_mesh(args)
    texture = read_image(args.texture, what="texture")
    reference = None
    if args.reference:
        reference = read_image(args.reference, what="reference image")
    generator = _generator(args.model, args)
    result = _run(
        "restyle",
        mesh=mesh,
        texture=texture,
        prompt=args.prompt,
        strength=args.strength,
        reference_image=reference,
        generator=generator,
        n_views=args.views,
        view_resolution=args.view_resolution,
        texture_size=args.texture_size,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        preset=args.preset,
        **_pbr(args),
    )
    save_textured(mesh, result, out, overwrite=args.overwrite)
    print(
        f"Wrote {out} (restyle at strength {args.strength}, {len(result.views)} views{_maps(result)}; "
        f"{result.timings['total']:.1f} s)"
    )


def _upscale(args) -> None:
    from .errors import OutputExistsError
    from .images import read_image, save_png

    out = Path(args.output)
    if out.resolve() == Path(args.texture).resolve():
        raise OutputExistsError(f"'{out}' is the input texture; write the upscaled one under another name.")
    _refuse_existing(out, args.overwrite)
    mesh = _load_mesh(args)
    texture = read_image(args.texture, what="texture")
    big = _run(
        "upscale",
        mesh=mesh,
        texture=texture,
        scale=args.scale,
        upscaler=args.upscaler,
        tile=args.tile,
        prompt=args.prompt,
        seed=args.seed,
    )
    save_png(big, out)
    print(f"Wrote {out} ({texture.shape[0]}² -> {big.shape[0]}², {args.upscaler})")


def _inpaint(args) -> None:
    import numpy as np
    from PIL import Image

    from .images import read_image, save_png
    from .texturing import inpaint_uv

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    mesh = _load_mesh(args)
    rgba = read_image(args.texture, "RGBA", "texture")
    if args.mask:
        mask = np.asarray(Image.open(args.mask).convert("L").resize(rgba.shape[1::-1])) > 127
    else:
        mask = rgba[..., 3] < 0.5
    generator = _generator(args.model, args) if args.model else None
    with _cancel_on_ctrl_c() as token:
        filled = inpaint_uv(
            mesh, rgba[..., :3], mask, generator=generator, prompt=args.prompt, seed=args.seed, cancel=token
        )
    save_png(filled, out)
    print(f"Wrote {out} ({int(mask.sum())} texels filled{' by ' + args.model if args.model else ''})")


def _shape(args) -> None:
    from .geometry import load_mesh, save_textured, to_user_frame
    from .shapes import is_closed, shape_mesh

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    if args.pbr and not args.texture:
        from .errors import InvalidParameterError

        raise InvalidParameterError("--pbr makes the maps of a texture; add --texture 'what it shows'.")
    with _watched() as (bar, token):
        kw = dict(seed=args.seed, steps=args.steps, guidance=args.guidance, device=args.device, n_points=args.points)
        made = shape_mesh(args.prompt, args.shape_model, progress=bar, cancel=token, **kw)
    mesh = load_mesh(made)
    if args.texture:
        result = _run("texture", mesh=mesh, prompt=args.texture, strategy="sync", seed=args.seed, **_pbr(args))
        save_textured(mesh, result, out, overwrite=args.overwrite)
    else:
        with writing(out) as (temp,):
            to_user_frame(mesh).export(str(temp), file_type=out.suffix.lower().lstrip("."))
    print(
        f"Wrote {out} ({len(mesh.faces)} faces, closed: {is_closed(mesh)}"
        f"{', textured: ' + args.texture if args.texture else ''})"
    )


def _create(args) -> None:
    from .geometry import save_textured
    from .shapes import is_closed

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    result = _run(
        "create",
        prompt=args.prompt,
        shape_model=args.shape_model,
        generator=_generator(args.model, args),
        seed=args.seed,
        n_points=args.points,
        shape_steps=args.shape_steps,
        face_budget=args.face_budget,
        n_views=args.views,
        view_resolution=args.view_resolution,
        texture_size=args.texture_size,
        steps=args.steps,
        guidance=args.guidance,
        **_pbr(args),
    )
    unknown = f", not understood: {', '.join(result.unknown_words)}" if result.unknown_words else ""
    print(f"Understood: shape: {result.shape_prompt!r}, texture: {result.texture_prompt!r}{unknown}")
    save_textured(result.mesh, result.texture, out, overwrite=args.overwrite)
    t = result.timings
    print(
        f"Wrote {out} ({len(result.mesh.faces)} faces, closed: {is_closed(result.mesh)}, "
        f"{len(result.texture.texture)}² texture{_maps(result.texture)}; "
        + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in t.items())
        + ")"
    )


# The server's size limits with a flag each (meshdream.jobs.Limits; the others keep their defaults).
SERVE_LIMITS = {
    "texture_size": "largest texture a job takes or makes, per side",
    "view_resolution": "largest view (or camera) side in pixels",
    "n_views": "most views per job",
    "n_points": "most points per shape",
    "steps": "most denoising steps",
    "faces": "most faces of a mesh sent as arrays (and of a shape mesh's face_budget)",
}


def _serve(args) -> None:
    import os

    from .server import serve

    serve(
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("MESHDREAM_TOKEN") or None,
        model=args.model,
        model_options={"controlnet": args.controlnet, "base": args.base, "lora": args.lora, "sampler": args.sampler},
        device=args.device,
        idle_unload=args.idle_unload,
        max_body_mb=args.max_body_mb,
        keep_results_s=args.keep_results_s,
        keep_results_mb=args.keep_results_mb,
        limits=Limits(**{name: getattr(args, "max_" + name) for name in SERVE_LIMITS}),
        models_dir=args.models_dir,
        allow_paths=args.allow_paths,
        exit_with_parent=args.exit_with_parent,
    )


def _batch(args) -> int:
    """Many meshes with one loaded model; exit 1 if any item failed, 130 if Ctrl-C stopped it (finished items stay)."""
    from tqdm import tqdm

    from .batch import FAILED, SKIPPED, collect_items, run_batch, run_batch_ray

    unless_unset = {  # unset: the preset's, else the model's own (texture_mesh)
        "n_views": args.views,
        "view_resolution": args.view_resolution,
        "texture_size": args.texture_size,
        "steps": args.steps,
        "guidance": args.guidance,
        "preset": args.preset,
    }
    settings = {
        "strategy": args.strategy,
        "seed": args.seed,
        **{k: v for k, v in unless_unset.items() if v is not None},
        **{k: v for k, v in _pbr(args).items() if v is not None},  # --pbr: GLB + a PNG per map, named in the summary
    }
    items = collect_items(args.inputs, args.prompt, settings, args.jobs, uv_set=args.uv_set)
    options = {"controlnet": args.controlnet, "base": args.base, "lora": args.lora, "sampler": args.sampler}
    options = {k: v for k, v in options.items() if v} | {"device": args.device, "memory": args.memory}
    bar = tqdm(total=len(items), desc="batch", unit="mesh", file=sys.stderr)

    def progress(p) -> None:
        if p.result is not None:
            r = p.result
            note = {FAILED: f"FAILED: {r.error}", SKIPPED: "skipped (done earlier)"}.get(
                r.status, f"done in {r.seconds:.1f} s"
            )
            bar.write(f"{p.item.name} -> {p.item.output}: {note}", file=sys.stderr)
            bar.update(p.done - bar.n)
        elif p.step is not None:
            bar.set_postfix_str(f"{p.item.name} {p.step.stage} {p.step.step}/{p.step.total}")

    with _cancel_on_ctrl_c() as token:
        try:
            # --ray: the same batch over a Ray cluster (one model worker per GPU, or per --cpus-per-worker cores)
            ray_options = {"address": args.ray, "workers": args.workers, "cpus_per_worker": args.cpus_per_worker}
            report = (functools.partial(run_batch_ray, **ray_options) if args.ray else run_batch)(
                items,
                args.out,
                model=args.model,
                model_options=options,
                retries=args.retries,
                overwrite=args.overwrite,
                progress=progress,
                cancel=token,
            )
        finally:
            bar.close()
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("done", "failed", "skipped"))
    print(f"Batch: {counts} of {len(items)}; summary in {report.summary_path}")
    if report.cancelled:
        print("meshdream: cancelled; finished items are kept and a re-run skips them.", file=sys.stderr)
        return 130
    return 1 if report.failed else 0


def _models(args) -> None:
    from .generators import list_cached_models

    print("builtin\tthe built-in offline texture model")
    for m in list_cached_models():
        print(f"{m['id']}\t{m['kind']}\t{m['bytes'] / 2**30:.1f} GB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshdream", description="Texture meshes and generate shapes with diffusion.")
    parser.add_argument("--version", action="version", version=f"meshdream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="load a mesh and report what MeshDream sees (faces, UVs, normalization)")
    p.add_argument("mesh")
    p.set_defaults(run=_info)

    p = sub.add_parser("views", help="render depth/normal/mask images of a mesh from orbit cameras")
    p.add_argument("mesh")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--fov", type=float, default=40.0)
    p.set_defaults(run=_views)

    def sampler_option(p):
        p.add_argument(
            "--sampler",
            choices=list(SAMPLERS),
            help="few-step sampler with its steps and guidance (default: recognized from the model / LoRA names)",
        )

    def model_options(p, default):
        p.add_argument("--model", default=default, help="builtin, a cached Hugging Face id, a folder or a .safetensors")
        p.add_argument("--controlnet", help="depth ControlNet for a plain text-to-image model")
        p.add_argument("--base", help="base model for a single-file checkpoint")
        p.add_argument("--lora", action="append", help="LoRA file (repeatable)")
        sampler_option(p)
        p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
        p.add_argument(
            "--memory",
            default="auto",
            choices=["auto", "none", "low", "minimal"],
            help="GPU memory preset: low for ~8 GB cards, minimal for ~4 GB (auto: by free memory)",
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    def pbr_options(p):
        p.add_argument(
            "--pbr",
            action="store_true",
            help="also write roughness, metallic and a normal map (GLB: one PBR material; OBJ: <stem>_roughness.png, "
            "<stem>_metallic.png, <stem>_normal.png beside it)",
        )
        p.add_argument(
            "--material-model",
            help="with --pbr: builtin (default), a cached Marigold intrinsics or normals pipeline, or its folder",
        )
        p.add_argument(
            "--delight",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="with --pbr: bake the material model's de-lit albedo as the base colour (default: when it makes one)",
        )

    def uv_set_option(p):
        p.add_argument("--uv-set", type=int, default=0, help="UV set of a glTF/GLB file to texture (n: TEXCOORD_n)")

    def texture_options(p):
        """texture_mesh's job settings (the `texture` and `batch` subcommands)."""
        p.add_argument("--strategy", default="sync", choices=("sync", "sequential", "project"))
        size_options(p)
        p.add_argument("--guidance", type=float)
        uv_set_option(p)

    def size_options(p):
        """Views, resolution, texture size and steps: unset, the preset's, else 8 views and what the model's card
        says suits it (built-in: 128 px views, 512² texture; SD 1.5: 512 px)."""
        p.add_argument(
            "--preset", choices=tuple(PRESETS), help="quick: a preview in seconds; full: the model's own (default)"
        )
        p.add_argument("--views", type=int)
        p.add_argument("--view-resolution", type=int)
        p.add_argument("--texture-size", type=int)
        p.add_argument("--steps", type=int)

    p = sub.add_parser("texture", help="texture a mesh from a prompt and write a textured GLB/OBJ")
    p.add_argument("mesh")
    p.add_argument("--prompt", required=True)
    p.add_argument("-o", "--output", required=True, help="output .glb or .obj")
    model_options(p, "builtin")
    texture_options(p)
    p.add_argument("--inpaint-model", help="model that fills texels no view saw (default: harmonic fill)")
    p.add_argument("--views-sheet", help="also write the generated views side by side to this PNG")
    p.add_argument("--ip-adapter", help="IP-Adapter .safetensors, so --reference can steer the style")
    p.add_argument("--reference", help="reference picture whose style the texture follows (needs --ip-adapter)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the time of every stage")
    pbr_options(p)
    p.set_defaults(run=_texture)

    p = sub.add_parser("restyle", help="restyle a mesh's existing texture toward a prompt; writes a textured GLB/OBJ")
    p.add_argument("mesh")
    p.add_argument("--texture", required=True, help="the mesh's current texture (square PNG, power-of-two size)")
    p.add_argument("--prompt", required=True)
    p.add_argument("-o", "--output", required=True, help="output .glb or .obj")
    p.add_argument("--strength", type=float, default=0.5, help="0 keeps the texture, 1 replaces it (default 0.5)")
    p.add_argument("--reference", help="picture whose colours (built-in model) or style (--ip-adapter) to follow")
    p.add_argument("--ip-adapter", help="IP-Adapter .safetensors for --reference with a diffusers model")
    size_options(p)  # --texture-size / --preset full: refine a quick preview at the full size
    p.add_argument("--guidance", type=float)
    model_options(p, "builtin")
    uv_set_option(p)
    pbr_options(p)
    p.set_defaults(run=_restyle)

    p = sub.add_parser("upscale", help="upscale a mesh's UV texture 2x or 4x, chart by chart; writes a new PNG")
    p.add_argument("mesh")
    p.add_argument("texture", help="the mesh's texture (square PNG, power-of-two size)")
    p.add_argument("-o", "--output", required=True, help="output PNG (the input is never overwritten)")
    p.add_argument("--scale", type=int, default=2, choices=(2, 4))
    p.add_argument(
        "--upscaler",
        default="builtin",
        help="builtin (default: MeshDream's own small super-resolution model), lanczos (a plain Lanczos resize), "
        "an ESRGAN-family .pth/.safetensors file, or a diffusers x4 upscaler folder",
    )
    p.add_argument(
        "--tile",
        type=int,
        help="tile size in input texels (default: 1024 for builtin and lanczos, else 256; smaller: less memory)",
    )
    p.add_argument("--prompt", default="", help="for the diffusers upscaler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    uv_set_option(p)
    p.set_defaults(run=_upscale)

    p = sub.add_parser("inpaint", help="fill texels of a UV texture (alpha 0 or --mask) and smooth its seams")
    p.add_argument("mesh")
    p.add_argument("texture", help="texture PNG; transparent texels are filled unless --mask is given")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--mask", help="PNG, white = fill")
    p.add_argument("--prompt", default="")
    model_options(p, None)
    uv_set_option(p)
    p.set_defaults(run=_inpaint)

    p = sub.add_parser("shape", help="generate a new watertight, UV-unwrapped mesh from a shape category")
    p.add_argument("prompt", help="a category (meshdream.shape_categories()), e.g. chair; any sentence with Shap-E")
    p.add_argument("-o", "--output", required=True, help="output .glb, .obj, .ply or .stl (.glb/.obj with --texture)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", type=int, default=2048)
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--texture", help="also texture it with the built-in model, e.g. 'oak wood'")
    p.add_argument(
        "--shape-model",
        help="builtin (default: the shipped categories) or openai/shap-e (any sentence; from the local cache)",
    )
    p.add_argument("--device", help="where the shape model runs (default: the CPU; cuda suits Shap-E)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    pbr_options(p)
    p.set_defaults(run=_shape)

    p = sub.add_parser("create", help="make a closed, textured mesh from a sentence, e.g. 'a tall oak chair'")
    p.add_argument("prompt", help="a shape the shape model makes (meshdream.shape_categories()) and its material")
    p.add_argument("-o", "--output", required=True, help="output .glb or .obj")
    p.add_argument("--shape-model", help="builtin (default) or an open-vocabulary shape model's spec")
    model_options(p, "builtin")
    p.add_argument("--points", type=int, default=2048, help="points the built-in shape model samples")
    p.add_argument("--shape-steps", type=int, help="the shape model's sampling steps (default: its own)")
    p.add_argument("--face-budget", type=int, default=20000, help="most triangles of the mesh")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--view-resolution", type=int)
    p.add_argument("--texture-size", type=int)
    p.add_argument("--steps", type=int, help="the texture model's denoising steps (default: its own)")
    p.add_argument("--guidance", type=float)
    pbr_options(p)
    p.set_defaults(run=_create)

    p = sub.add_parser("serve", help="run the HTTP server tools send jobs to (needs: pip install 'meshdream[server]')")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs --token")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--token", help="clients must send 'Authorization: Bearer TOKEN' (default: $MESHDREAM_TOKEN)")
    p.add_argument("--model", default="builtin", help="texture model for jobs that name none")
    p.add_argument("--controlnet", help="depth ControlNet for a plain text-to-image --model")
    p.add_argument("--base", help="base model for a single-file --model checkpoint")
    p.add_argument("--lora", action="append", help="LoRA file for --model (repeatable)")
    sampler_option(p)
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    p.add_argument("--idle-unload", type=float, default=600.0, help="unload models after S idle seconds (0: never)")
    p.add_argument("--max-body-mb", type=float, default=256.0, help="largest request body accepted (MB)")
    p.add_argument(
        "--keep-results-s",
        type=float,
        default=3600.0,
        help="seconds a finished job's result stays to fetch, fetched or not (default 3600)",
    )
    p.add_argument(
        "--keep-results-mb",
        type=float,
        default=2048.0,
        help="memory for finished results (default 2048 MB): fetched ones are evicted first; when results nobody "
        "fetched fill it, new jobs are refused (503) until they are fetched or expire",
    )
    p.add_argument(
        "--models-dir",
        help="folder of models jobs may name by their file or folder name (diffusers folders, .safetensors, "
        "upscaler .pth files), beside builtin and the Hugging Face cache; GET /v1/models lists them all",
    )
    p.add_argument(
        "--allow-paths",
        action="store_true",
        help="jobs may also name models by any path on this machine (a private worker on loopback, as "
        "client.ensure_server starts; otherwise only listed models, and an unknown name says nothing about paths)",
    )
    for name, what in SERVE_LIMITS.items():
        default = getattr(Limits(), name)
        flag, help_text = Limits().flag(name), f"{what} (default {default})"
        p.add_argument(flag, dest="max_" + name, metavar="N", type=int, default=default, help=help_text)
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the process that started it exits")
    p.set_defaults(run=_serve)

    p = sub.add_parser("batch", help="texture many meshes (files, folders, a jobs.jsonl) with one loaded model")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="mesh files and folders of mesh files")
    p.add_argument(
        "--jobs",
        help='jobs.jsonl: one {"input", "prompt", "settings", "output"} object per line; "kind": "restyle" or '
        '"upscale" with "texture": PATH works on the texture a mesh already has',
    )
    p.add_argument("--prompt", help="prompt of every item (a job's own prompt wins)")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, help="output folder (+ summary.json)")
    model_options(p, "builtin")  # its --overwrite: redo items a previous run finished
    texture_options(p)
    p.add_argument("--retries", type=int, default=0, help="more attempts for an item that failed unexpectedly")
    p.add_argument("--ray", metavar="local|auto|ADDRESS", help="run on Ray: start one, join this machine's, or ADDRESS")
    p.add_argument("--workers", type=int, help="--ray: model workers (default: one per GPU or per --cpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="--ray: cores each model worker holds")
    pbr_options(p)
    p.set_defaults(run=_batch)

    p = sub.add_parser("models", help="list the models available offline")
    p.set_defaults(run=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except CancelledError:
        print("meshdream: cancelled; nothing was written.", file=sys.stderr)
        return 130
    except MeshDreamError as exc:
        print(f"meshdream: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused a file or folder: say which, why and what to do
        print(f"meshdream: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshdream: interrupted; nothing more was written.", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
