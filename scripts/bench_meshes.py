#!/usr/bin/env python3
"""`python build.py bench meshes`: a mixed set of meshes textured end to end with the built-in model (issue 15).

Per mesh: faces, coverage (the painted share of the UV layout's texels, and of the texels facing some view), the
time of every stage (load_mesh and unwrap, then texture_mesh's: load_model, views, sync, denoise, bake, inpaint;
summed by kind: setup, geometry, model) and the peak RSS. Each mesh runs in a process of its own (`python
bench_meshes.py NAME` prints its JSON), so the peak is its own. The xatlas child of an unwrap is not in it: the
kernel charges a child the parent's RSS at spawn, so its own peak (about 170 MB at 124k faces) cannot be read
apart. The machine's load average is recorded with each mesh: other work on the cores slows every stage.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "assets" / "meshes"
# The built-in model's own settings (its card's: 128 px views, 512² texture, 8 UniPC steps), as the demo runs it.
JOB = dict(n_views=8, seed=0)  # the rest: the model's own
PROMPT = "red brick"
BUDGET_MB = 3072  # peak RSS per mesh (the machine: 24 GiB, 2 cores)
TARGET_S = {"blob_124k": 60.0}  # end to end (load, unwrap, texture_mesh) on 2 cores
MESHES = (
    "spot",
    "stanford-bunny",
    "suzanne",
    "teapot",
    "plane_xy",
    "plane_yz",
    "plane_xz",
    "udim_cube",
    "blob_124k",
    "torus_1m",
)


def plane(axes: str, n: int = 16) -> trimesh.Trimesh:
    """An n x n grid of quads (2 n² faces, no UVs) in the plane of `axes` ("xy", "yz" or "xz")."""
    g = np.linspace(-1, 1, n + 1)
    a, b = (x.ravel() for x in np.meshgrid(g, g, indexing="ij"))
    vertices = np.zeros((len(a), 3))
    vertices[:, "xyz".index(axes[0])], vertices[:, "xyz".index(axes[1])] = a, b
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    return trimesh.Trimesh(vertices, np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]), process=False)


def source(name: str, tmp: Path):
    """What `load_mesh` gets for `name`: a file path, or a mesh made here."""
    sys.path.insert(0, str(ROOT))
    if name.startswith("plane_"):
        return plane(name[-2:])
    if name == "blob_124k":
        from tests.big_meshes import blob

        return blob(154)
    if name == "torus_1m":
        sys.path.insert(0, str(ROOT / "scripts"))
        from bench import parametric_torus

        return parametric_torus(708)
    if name == "udim_cube":  # six faces on UDIM tiles 1001-1006: one texture page per tile
        from tests.cube_meshes import cube_obj

        return cube_obj(tmp / "udim_cube.obj", [(k, 0) for k in range(6)])
    import meshdream

    for folder in (Path(meshdream.__file__).parent / "assets", SHARED):
        if (folder / f"{name}.obj").exists():
            return folder / f"{name}.obj"
    raise FileNotFoundError(f"{name}.obj is in neither the core's assets nor {SHARED}")


def layout_coverage(mesh: trimesh.Trimesh, result) -> tuple[float, float]:
    """(painted share of the layout's texels, painted share of the texels facing some view), in %."""
    import meshdream
    from meshdream.geometry.pages import atlas_mesh, mesh_pages

    pages = mesh_pages(mesh, None)
    atlas = mesh if pages is None else atlas_mesh(mesh, pages)  # what texture_mesh baked into (result.weight)
    uvm = meshdream.uv_maps(atlas, result.weight.shape[0])
    covered = uvm.coverage.ravel()
    painted = (result.weight.ravel() > 0)[covered]
    position, normal = uvm.position.reshape(-1, 3)[covered], uvm.normal.reshape(-1, 3)[covered]
    cameras = np.stack([camera.position for camera, _ in result.views])
    facing = (np.einsum("nc,nc->n", normal, position)[:, None] < normal @ cameras.T).any(axis=1)
    return round(100 * float(painted.mean()), 2), round(100 * float(painted[facing].mean()), 2)


def measure(name: str) -> dict:
    """One mesh, this process: load it (timed, unwrap apart), texture it, report."""
    import meshdream

    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        src = source(name, Path(tmp))
        t0, cpu0 = time.perf_counter(), sum(os.times()[:4])
        mesh = meshdream.load_mesh(src)
        load_s = time.perf_counter() - t0
        result = meshdream.texture_mesh(mesh, PROMPT, **JOB)
    info = meshdream.mesh_info(mesh)
    unwrap_s = info.unwrap_seconds
    t = result.timings
    timings = {"load_mesh": round(load_s - unwrap_s, 3), "unwrap": round(unwrap_s, 3)}
    timings.update({k: round(v, 3) for k, v in t.items() if k not in ("setup", "total")})
    timings["setup"] = round(t["setup"] + load_s, 3)
    coverage, facing = layout_coverage(mesh, result)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "faces": len(mesh.faces),
        "unwrapped": info.unwrapped,
        "pages": len(result.textures) or 1,
        "coverage_pct": coverage,
        "facing_coverage_pct": facing,
        "end_to_end_s": round(load_s + t["total"], 2),
        "mesh_s": round(load_s + t["geometry"], 2),  # what the mesh costs: loading, unwrapping, geometry stages
        "timings_s": timings,
        "cpu_s": round(sum(os.times()[:4]) - cpu0, 1),  # with the xatlas child: less swayed by a busy machine
        "peak_rss_mb": round(peak_mb),
        "within_budget": peak_mb <= BUDGET_MB,
        "load_avg_1m": round(load_avg, 2),
    }


def run(names=MESHES) -> dict:
    out: dict = {}
    for name in names:
        proc = subprocess.run([sys.executable, __file__, name], capture_output=True, text=True, timeout=1800)
        if proc.returncode:
            out[name] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
            continue
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        if name in TARGET_S:
            out[name]["target_s"] = TARGET_S[name]
            out[name]["target_met"] = out[name]["end_to_end_s"] <= TARGET_S[name]
    out["setup"] = (
        f"texture_mesh(load_mesh(mesh), {PROMPT!r}, **{JOB}) with the built-in model on the CPU "
        f"({len(os.sched_getaffinity(0))} cores), one process per mesh; budget {BUDGET_MB} MB peak RSS"
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in MESHES:
        print(json.dumps(measure(sys.argv[1])))
    else:
        print(json.dumps(run(sys.argv[1:] or MESHES), indent=2))
