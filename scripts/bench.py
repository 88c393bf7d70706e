#!/usr/bin/env python3
"""MeshDream benchmarks: `python build.py bench [NAME ...]` prints one JSON object and writes out/bench.json.

NAMEs: roundtrip (bake fidelity), speed (render and bake timings), scale (2M-face mesh, peak memory), meshes (a
mixed set textured end to end: coverage, stage times, peak RSS; scripts/bench_meshes.py), upscale (the built-in
upscaler against bicubic and Lanczos: PSNR, SSIM, time, and upscale_texture inside the charts of fragmented and
large-chart UV layouts; scripts/bench_upscale.py), restyle (structure kept and style moved toward the prompt at
strength 0.5, the default, on all 12 cases, and 0 / 0.3 on a few; time; scripts/bench_restyle.py), pbr (the
material model against procedural ground truth on unseen meshes: roughness, metallic, normals, lit-render PSNR,
the time pbr=True adds; scripts/bench_pbr.py), create (create_asset per shape category: time by stage, closedness,
glTF validator errors; scripts/bench_create.py), fast (the demo's CPU wall time at the default setting and at the
Quick preset, in-process and through a local worker; scripts/bench_fast.py).
Figures are measured on whatever machine runs this; the targets are for 2 CPU cores.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import meshdream
import numpy as np
import trimesh
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "assets" / "meshes"
BUNDLED = Path(meshdream.__file__).parent / "assets"


def mesh_path(name: str) -> Path:
    for folder in (BUNDLED, SHARED):
        if (folder / name).exists():
            return folder / name
    raise SystemExit(f"benchmark mesh {name} not found in {BUNDLED} or {SHARED}")


def astronaut(size: int = 1024) -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    return resize(data.astronaut(), (size, size), anti_aliasing=True).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(10 * np.log10(1.0 / np.mean((a - b) ** 2))), 2)


def interior(chart: np.ndarray, depth: int = 3) -> np.ndarray:
    """Texels at least `depth` texels away from their chart's border."""
    pad = np.pad(chart, 1, constant_values=-1)
    border = np.zeros(chart.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        border |= pad[dy : dy + chart.shape[0], dx : dx + chart.shape[1]] != chart
    return (chart >= 0) & (ndimage.distance_transform_edt(~border) >= depth)


def bench_roundtrip() -> dict:
    mesh = meshdream.load_mesh(mesh_path("spot.obj"))
    texture = astronaut(1024)
    inner = interior(meshdream.uv_maps(mesh, 1024).chart)
    results, seen_all = {}, None
    for n_views, res in ((8, 512), (8, 1024), (12, 512), (12, 1024)):
        cams = meshdream.orbit_cameras(n_views, resolution=res, mesh=mesh)
        views = [(c, meshdream.render_texture(mesh, texture, c)) for c in cams]
        r = meshdream.bake(mesh, views, 1024)
        seen = r.seen
        seen_all = seen if seen_all is None else seen_all & seen
        results[f"{n_views}views_{res}px"] = {
            "coverage_pct": round(100 * float(seen[r.coverage].mean()), 2),
            "psnr_seen_db": psnr(r.texture[seen], texture[seen]),
            "psnr_interior_db": psnr(r.texture[seen & inner], texture[seen & inner]),
            "_texture": r.texture,
        }
    for v in results.values():
        v["psnr_common_mask_db"] = psnr(v.pop("_texture")[seen_all], texture[seen_all])
    results["common_mask_texels"] = int(seen_all.sum())
    results["setup"] = "spot.obj (own UVs), skimage astronaut at 1024², orbit_cameras(n), bake into 1024², cos^6 blend"
    return results


def timed(fn, repeat: int = 3) -> float:
    """Best of `repeat` wall times, in seconds."""
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best, 3)


def bench_speed() -> dict:
    out = {}
    bunny = meshdream.load_mesh(mesh_path("stanford-bunny.obj"))
    cam = meshdream.orbit_cameras(1, resolution=512, mesh=bunny)[0]
    meshdream.render(bunny, cam)  # build the Embree scene once
    t = timed(lambda: meshdream.render(bunny, cam).uv, repeat=5)
    out["render_bunny_512"] = {"faces": len(bunny.faces), "seconds": t, "mrays_per_s": round(512 * 512 / t / 1e6, 2)}

    spot_file = mesh_path("spot.obj")
    texture = astronaut(1024)
    for n_views, res, size in ((8, 512, 1024), (12, 1024, 1024)):
        mesh = meshdream.load_mesh(spot_file)
        cams = meshdream.orbit_cameras(n_views, resolution=res, mesh=mesh)
        views = [(c, meshdream.render_texture(mesh, texture, c)) for c in cams]

        def cold():  # a fresh mesh object: UV raster, seams and the Embree scene are rebuilt too
            m = meshdream.load_mesh(spot_file)
            t = time.perf_counter()
            meshdream.bake(m, views, size)
            return time.perf_counter() - t

        cold_s = round(min(cold() for _ in range(2)), 3)
        warm_s = timed(lambda: meshdream.bake(mesh, views, size))
        op = meshdream.bake_operator(mesh, cams, size)
        apply_s = timed(lambda: op.apply([v[1] for v in views]))
        out[f"bake_{n_views}views_{res}px_into_{size}"] = {
            "seconds_cold": cold_s,
            "seconds_warm_mesh_cache": warm_s,
            "seconds_rebake_same_cameras": apply_s,
        }
    return out


def parametric_torus(n: int) -> trimesh.Trimesh:
    """A torus of 2 n² faces with a seamed, non-overlapping UV grid (no unwrap needed at any size)."""
    s = np.linspace(0, 1, n + 1)
    u, v = np.meshgrid(s, s, indexing="ij")
    a, b = 2 * np.pi * u, 2 * np.pi * v
    verts = np.stack([(1 + 0.35 * np.cos(b)) * np.cos(a), 0.35 * np.sin(b), (1 + 0.35 * np.cos(b)) * np.sin(a)], -1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    faces = np.concatenate([q[:, [0, 2, 1]], q[:, [0, 3, 2]]])
    uv = np.stack([u, v], -1).reshape(-1, 2) * 0.98 + 0.01
    return trimesh.Trimesh(verts.reshape(-1, 3), faces, visual=trimesh.visual.TextureVisuals(uv=uv), process=False)


def bench_scale() -> dict:
    """Runs itself in a fresh process so the peak memory is this workload's alone."""
    if "--scale-child" not in sys.argv:
        proc = subprocess.run([sys.executable, __file__, "--scale-child"], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    t0 = time.perf_counter()
    mesh = meshdream.load_mesh(parametric_torus(1000))
    t_load = time.perf_counter() - t0
    cams = meshdream.orbit_cameras(8, resolution=512, mesh=mesh)
    t0 = time.perf_counter()
    maps = [meshdream.render(mesh, c) for c in cams]
    t_render = time.perf_counter() - t0
    images = [np.dstack([m.uv[..., 0], m.uv[..., 1], np.zeros_like(m.depth)]) for m in maps]
    images = [np.nan_to_num(i) for i in images]
    t0 = time.perf_counter()
    r = meshdream.bake(mesh, list(zip(cams, images)), 1024)
    t_bake = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "faces": len(mesh.faces),
        "load_s": round(t_load, 2),
        "render_8x512_s": round(t_render, 2),
        "bake_8x512_into_1024_s": round(t_bake, 2),
        "coverage_pct": round(100 * float(r.seen[r.coverage].mean()), 2),
        "peak_rss_gb": round(peak_gb, 2),
    }


def _tiny_generator(kind: str = "sd15_controlnet"):
    """A tiny random-weight pipeline (the tests' builder), saved and loaded like a user's model."""
    import tempfile

    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import build

    folder = build(Path(tempfile.mkdtemp(prefix="meshdream_bench_")) / kind, kind)
    return meshdream.load_generator(folder)


def _view_psnr(mesh, result) -> float:
    """Mean PSNR between each generated view and the final texture rendered back into it (object pixels)."""
    scores = []
    for cam, image in result.views:
        maps = meshdream.render(mesh, cam)
        back = meshdream.render_texture(mesh, result.texture, cam, maps=maps)
        scores.append(psnr(back[maps.mask], image[maps.mask]))
    return round(float(np.mean(scores)), 2)


def bench_texturing() -> dict:
    """Tiny SD1.5 + ControlNet pipeline, spot.obj, the texture_mesh defaults (8 views at 512 px, 1024², 20 steps)."""
    from meshdream.texturing.inpaint import inpaint_uv

    gen = _tiny_generator()
    out = {}
    for strategy in ("sync", "sequential"):
        mesh = meshdream.load_mesh(mesh_path("spot.obj"))
        t = time.perf_counter()
        result = meshdream.texture_mesh(mesh, "red brick wall", gen, strategy=strategy, seed=0)
        wall = time.perf_counter() - t
        geometry = result.timings.get("geometry", 0.0)
        # Seam error: mean colour jump across UV seam pairs in the raw bake, then after UV inpainting.
        raw = meshdream.bake(mesh, [(c, i) for c, i in result.views], 1024, padding=0)
        seams = meshdream.uv_maps(mesh, 1024).seams
        both = raw.seen.ravel()[seams].all(axis=1)
        pairs = seams[both]
        fixed = inpaint_uv(mesh, raw.texture, ~raw.seen)

        def err(tex):
            return float(np.abs(tex.reshape(-1, 3)[pairs[:, 0]] - tex.reshape(-1, 3)[pairs[:, 1]]).mean())

        out[strategy] = {
            "view_consistency_psnr_db": _view_psnr(mesh, result),
            "seam_error_before": round(err(raw.texture), 4),
            "seam_error_after_inpaint": round(err(fixed), 4),
            "wall_s": round(wall, 2),
            "model_s": round(result.timings.get("model", 0.0), 2),
            "geometry_s": round(geometry, 2),
            "geometry_pct": round(100 * geometry / result.timings["total"], 1),
            "timings": result.timings,
        }
    out["setup"] = "tiny random SD1.5+ControlNet (tests/tiny_models.py), spot.obj, 8 views@512, 1024², 20 steps, CPU"
    return out


def bench_fullsize() -> dict:
    """Full-size SD 1.5 + depth ControlNet architecture with random weights (speed does not depend on weights).

    With CUDA: the issue's target run (8 views at 512 px, 20 steps, fp16, sync). Without: one view, two steps, to
    show the per-step cost of the real architecture on this CPU."""
    import tempfile

    import torch

    sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
    from bench_gpu import sd15_components
    from meshdream.generators.diffusers_generator import Components, DiffusersGenerator
    from meshdream.generators.schedulers import make_scheduler

    cuda = torch.cuda.is_available()
    dev, dt = torch.device("cuda" if cuda else "cpu"), torch.float16 if cuda else torch.float32
    built = sd15_components(Path(tempfile.mkdtemp()), dev)
    parts = Components(**{**built, "scheduler": make_scheduler("dpm++", built["scheduler"].config)})
    for m in (parts.unet, parts.controlnet, parts.vae, parts.text_encoder):
        m.to(dev, dt).eval()
    gen = DiffusersGenerator(parts, "controlnet", "sd15-fullsize-random", dev, dt)
    params = sum(p.numel() for m in (parts.unet, parts.controlnet) for p in m.parameters())
    mesh = meshdream.load_mesh(mesh_path("spot.obj"))
    views, steps = (8, 20) if cuda else (1, 2)
    t = time.perf_counter()
    r = meshdream.texture_mesh(mesh, "red brick", gen, n_views=views, view_resolution=512, steps=steps)
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": str(dt),
        "unet_controlnet_params_m": round(params / 1e6, 1),
        "views": views,
        "steps": steps,
        "wall_s": round(time.perf_counter() - t, 2),
        "timings": r.timings,
    }


def readme_examples() -> dict:
    """Wall seconds of the README's command-line examples with the built-in model at its defaults (target: each
    <= 90 s on 2 cores), run as a user would, in a scratch folder; batch: one mesh."""
    import shlex
    import tempfile

    from meshdream.images import save_png

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "meshes").mkdir()
        for target in (work / "spot.obj", work / "meshes" / "spot.obj"):
            target.write_bytes((BUNDLED / "spot.obj").read_bytes())
        holes = np.full((512, 512, 4), 0.6, np.float32)  # a texture with a transparent square to fill
        holes[170:340, 170:340, 3] = 0
        save_png(holes, work / "holes.png")
        save_png(np.full((512, 512, 3), 0.5, np.float32) * np.linspace(0.5, 1.5, 512)[:, None, None], work / "spot.png")
        examples = {
            "texture": ["texture", "spot.obj", "--prompt", "red brick", "-o", "spot.glb"],
            "inpaint": ["inpaint", "spot.obj", "holes.png", "-o", "filled.png", "--model", "builtin"],
            "restyle": ["restyle", "spot.obj", "--texture", "spot.png", "--prompt", "mossy stone", "-o", "out.glb"],
            "upscale": ["upscale", "spot.obj", "spot.png", "-o", "big.png"],
            "views": ["views", "spot.obj", "-o", "views/"],
            "shape": ["shape", "chair", "-o", "chair.glb", "--texture", "brown wood"],
            "batch": ["batch", "meshes/", "--prompt", "red brick", "-o", "batch_out/"],
        }
        out = {}
        for name, args in examples.items():
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "meshdream", *args], cwd=work, capture_output=True, text=True)
            out[name] = {"command": shlex.join(["meshdream", *args]), "wall_s": round(time.perf_counter() - t, 1)}
            if proc.returncode:
                out[name]["error"] = proc.stderr.strip().splitlines()[-1][:300]
    return out


def bench_texture_model() -> dict:
    """The built-in model's evaluation (scripts/eval_texture_model.py), its families on one mesh
    (out/texture_model_families.png), the README's command-line examples and the demo's timing."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_texture_model import evaluate, families_sheet, judges

    result = evaluate()
    judge = judges(2000, "cpu")["structure"]
    sheet = ROOT / "out" / "texture_model_families.png"
    result["families_on_spot"] = families_sheet(sheet, BUNDLED / "spot.obj", judge)
    result["readme_examples"] = readme_examples()
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(ROOT / "out" / "bench_demo")],
        capture_output=True,
        text=True,
        check=True,
    )
    result["demo_wall_s"] = round(time.perf_counter() - t, 1)
    result["demo_says"] = proc.stdout.strip().splitlines()[0][:200]
    return result


def bench_shapes() -> dict:
    """The shape model's evaluation (scripts/eval_shapes.py: 1-NNA / COV / MMD, sampling and meshing times)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_shapes import bench_shapes as evaluate_shapes

    return evaluate_shapes()


def bench_server() -> dict:
    """`meshdream serve` + the stdlib client vs the same built-in-model job in-process (load, texture, GLB): the
    per-job overhead (upload, queue, PNG/GLB encoding, download; target <= 5 % or <= 200 ms, whichever is larger),
    and the throughput of 20 small jobs queued at once."""
    import socket
    import tempfile

    from meshdream import client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "meshdream", "serve", "--port", str(port)], stderr=subprocess.DEVNULL
    )
    try:
        c = client.Client(f"http://127.0.0.1:{port}")
        for _ in range(600):
            try:
                c.health()
                break
            except client.ClientError:
                time.sleep(0.1)
        spot, gen = mesh_path("spot.obj"), meshdream.load_generator("builtin")
        job = dict(n_views=4, view_resolution=128, texture_size=256, steps=4, seed=0)
        small = dict(n_views=2, view_resolution=64, texture_size=64, steps=3, seed=0)

        def in_process(settings):
            mesh = meshdream.load_mesh(spot)
            r = meshdream.texture_mesh(mesh, "red brick", gen, **settings)
            with tempfile.TemporaryDirectory() as tmp:
                meshdream.save_textured(mesh, r.texture, Path(tmp) / "out.glb")

        def served(settings):
            return c.wait(c.submit_texture(spot, "red brick", **settings), include=("texture", "glb"))

        def wall(fn, *args):
            t = time.perf_counter()
            fn(*args)
            return time.perf_counter() - t

        in_process(job), served(job)  # warm: model loads, first calls
        local, remote = [], []
        for _ in range(5):  # interleaved, so drift in the machine's speed hits both alike
            local.append(wall(in_process, job))
            remote.append(wall(served, job))
        local_s, remote_s = float(np.median(local)), float(np.median(remote))
        overhead = float(np.median(np.subtract(remote, local)))  # paired: robust to other load on the machine

        t = time.perf_counter()
        jobs = [c.submit_texture(spot, "red brick", **small) for _ in range(20)]
        submit_s = time.perf_counter() - t
        for j in jobs:
            c.wait(j, include=("texture", "glb"))
        queued_s = time.perf_counter() - t
        sequential_s = sum(wall(in_process, small) for _ in range(20))
    finally:
        server.terminate()
        server.wait(60)
    return {
        "job": {**job, "mesh": "spot.obj", "model": "builtin"},
        "in_process_s": round(local_s, 3),
        "server_client_s": round(remote_s, 3),
        "overhead_ms": round(1000 * overhead, 1),
        "overhead_pct": round(100 * overhead / local_s, 2),
        "target_met": overhead <= max(0.05 * local_s, 0.2),
        "queued_small_jobs": {
            "job": {**small, "mesh": "spot.obj"},
            "jobs": len(jobs),
            "submit_all_s": round(submit_s, 3),
            "wall_s": round(queued_s, 2),
            "jobs_per_s": round(len(jobs) / queued_s, 2),
            "in_process_sequential_s": round(sequential_s, 2),
        },
    }


def bench_ray() -> dict:
    """12 small jobs (spot.obj, built-in model) in-process vs on a local Ray with 2 model workers (geometry loaded in
    the workers: 2 cores leave none for geometry tasks), and Ray's scheduling cost per job from 200 no-op calls
    (target: under 10 % of the in-process job time). Worker start (each imports torch, loads the model) shows in
    the time to the first result; the steady-state rate counts from the first result to the last."""
    import tempfile

    import ray
    from meshdream.batch import BatchItem, run_batch, run_batch_ray

    job = dict(n_views=4, view_resolution=128, texture_size=256, steps=4)
    items = [BatchItem(str(mesh_path("spot.obj")), "red brick", f"spot_{i}.glb", {**job, "seed": i}) for i in range(12)]
    gen = meshdream.load_generator("builtin")
    run_batch(items[:1], tempfile.mkdtemp(), generator=gen)  # warm: first-call costs
    t = time.perf_counter()
    run_batch(items, tempfile.mkdtemp(), generator=gen)
    local_s = time.perf_counter() - t

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        stamps = []

        def stamp(p) -> None:
            if p.result is not None:
                stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        report = run_batch_ray(items, tempfile.mkdtemp(), workers=2, progress=stamp)
        ray_s = time.perf_counter() - t0
        assert report.count("done") == len(items)
        noop = ray.remote(num_cpus=0)(lambda: None)
        ray.get(noop.remote())
        t = time.perf_counter()
        for _ in range(200):
            ray.get(noop.remote())
        overhead_s = (time.perf_counter() - t) / 200
    finally:
        ray.shutdown()
    per_job = local_s / len(items)
    return {
        "job": {**job, "mesh": "spot.obj", "model": "builtin", "jobs": len(items)},
        "in_process_s": round(local_s, 2),
        "in_process_jobs_per_min": round(60 * len(items) / local_s, 1),
        "ray_2_workers_s": round(ray_s, 2),
        "ray_jobs_per_min": round(60 * len(items) / ray_s, 1),
        "ray_first_result_s": round(stamps[0] - t0, 2),  # worker start + model load + the first job
        "ray_steady_jobs_per_min": round(60 * (len(stamps) - 1) / (stamps[-1] - stamps[0]), 1),
        "noop_job_overhead_ms": round(1000 * overhead_s, 2),
        "overhead_pct_of_job": round(100 * overhead_s / per_job, 2),
        "target_met": overhead_s < 0.1 * per_job,
    }


BENCHES = {
    "roundtrip": bench_roundtrip,
    "speed": bench_speed,
    "scale": bench_scale,
    "texturing": bench_texturing,
    "fullsize": bench_fullsize,
    "texture_model": bench_texture_model,
    "shapes": bench_shapes,
    "server": bench_server,
    "ray": bench_ray,  # needs the ray extra
    "meshes": lambda: __import__("bench_meshes").run(),  # scripts/bench_meshes.py: a mixed set, one process each
    "upscale": lambda: __import__("bench_upscale").run(),  # scripts/bench_upscale.py: built-in vs bicubic, Lanczos
    "restyle": lambda: __import__("bench_restyle").run(),  # scripts/bench_restyle.py: edge SSIM, classifier
    "pbr": lambda: __import__("bench_pbr").run(),  # scripts/bench_pbr.py: material model vs procedural truth
    "create": lambda: __import__("bench_create").run(),  # scripts/bench_create.py: sentence -> textured mesh
    "fast": lambda: __import__("bench_fast").run(),  # scripts/bench_fast.py: the demo at "full" and at Quick
    "gpu": lambda: __import__("bench_gpu").run(),  # scripts/bench_gpu.py: needs CUDA, so it runs only by name
}


def main(argv: list[str]) -> None:
    if "--scale-child" in argv:
        print(json.dumps(bench_scale()))
        return
    names = argv or [n for n in BENCHES if n != "gpu"]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    result = {"machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version()}}
    for name in names:
        t = time.perf_counter()
        result[name] = BENCHES[name]()
        result[name]["bench_wall_s"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=2)
    print(text)
    (ROOT / "out").mkdir(exist_ok=True)
    (ROOT / "out" / "bench.json").write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
