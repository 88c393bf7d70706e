"""Big meshes (issue 15, item 4): unwrapping a large mesh reports progress and stops for real on cancel, and a
124k-face mesh without UVs textures with the built-in model within the memory budget, its load and unwrap timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import meshdream
import numpy as np
import pytest
from meshdream.geometry.unwrap import LARGE_MESH, unwrap, uvs_usable

from tests.big_meshes import blob

ROOT = Path(__file__).resolve().parents[2]
MEMORY_BUDGET_MB = 3072  # peak RSS of a whole texturing process (Python, torch, model), as in `bench meshes`
MESH_GROWTH_MB = 1024  # of it, what the mesh may add over the process with its model loaded


def children() -> list[int]:
    """This process's child processes that are still alive (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.append(int(entry.name))
        except OSError:
            continue
    return out


@pytest.fixture(scope="module")
def medium():
    """About 25k faces: above LARGE_MESH, unwrapped in a child process in a second or two."""
    mesh = meshdream.load_mesh(blob(70), unwrap="never")
    assert len(mesh.faces) > LARGE_MESH
    return mesh


def test_unwrap_reports_progress_and_gives_a_usable_layout(medium):
    reports = []
    vmap, faces, uv = unwrap(medium.vertices, medium.faces, progress=reports.append)
    assert {p.stage for p in reports} == {"unwrap"} and "xatlas" in reports[0].message
    assert reports[0].step == 0 and reports[-1].step == reports[-1].total > 0
    assert all(a.step <= b.step for a, b in zip(reports, reports[1:]))
    assert len(faces) == len(medium.faces) and uv.min() >= 0 and uv.max() <= 1
    np.testing.assert_array_equal(vmap[faces], medium.faces)  # the same triangles, split along the new seams
    assert uvs_usable(uv, faces)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds child processes through /proc")
def test_cancel_kills_the_unwrap_at_once(medium):
    token = meshdream.CancelToken()
    cancelled_at, before = [], set(children())

    def progress(p):
        if not cancelled_at:  # the first report comes before the child starts working
            threading.Timer(0.5, lambda: (cancelled_at.append(time.perf_counter()), token.cancel())).start()

    with pytest.raises(meshdream.CancelledError):
        meshdream.load_mesh(blob(154), progress=progress, cancel=token)  # ~5 s of xatlas if left alone
    assert time.perf_counter() - cancelled_at[0] < 0.5
    assert set(children()) <= before  # the xatlas process is gone, not left running in the background


def test_124k_faces_without_uvs_texture_within_the_memory_budget():
    """In a process of its own, so its peak RSS is this job's alone."""
    script = f"""
import json, resource, sys
sys.path.insert(0, {str(ROOT)!r})
import meshdream
from tests.big_meshes import blob

generator = meshdream.load_generator("builtin")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
mesh = blob(154)
result = meshdream.texture_mesh(mesh, "red brick", generator, n_views=4, view_resolution=64, texture_size=256, steps=4)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"faces": len(mesh.faces), "timings": result.timings, "base_mb": base, "peak_mb": peak,
                   "seen": float((result.weight > 0).mean()), "std": float(result.texture.std())}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 120_000 < out["faces"] < 130_000
    t = out["timings"]
    assert t["unwrap"] > 0 and t["load_mesh"] >= 0 and t["setup"] >= t["unwrap"] + t["load_mesh"] - 1e-3
    assert out["peak_mb"] < MEMORY_BUDGET_MB, out
    assert out["peak_mb"] - out["base_mb"] < MESH_GROWTH_MB, out
    assert out["seen"] > 0.2 and out["std"] > 0.01  # four views painted a real share of the new layout


def test_a_failing_unwrap_process_is_a_clear_error(medium, monkeypatch):
    from meshdream.geometry import unwrap_process

    monkeypatch.setattr(unwrap_process, "_CHILD", "import sys; sys.exit('xatlas ran out of luck')")
    with pytest.raises(meshdream.InvalidMeshError, match="could not unwrap .*ran out of luck.*unwrap='never'"):
        unwrap(medium.vertices, medium.faces)
