"""The Ray backend on a real local Ray cluster (2 CPUs) with the built-in model and tiny jobs: same textures as the
in-process engine, a killed worker replaced and its item retried, a corrupt mesh failed alone, re-runs skipping,
and a valid summary.json after a cancel."""

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from meshdream.batch import DONE, FAILED, SKIPPED, BatchItem, read_jobs, run_batch, run_batch_ray
from meshdream.batch.ray_backend import import_ray, plan_workers
from meshdream.cli import main
from meshdream.errors import MeshDreamError
from meshdream.progress import CancelToken
from PIL import Image

from tests.conftest import BUNDLED

ray = pytest.importorskip("ray")

TINY = {"n_views": 2, "view_resolution": 64, "texture_size": 64, "steps": 3}
# Two half-core workers leave one core for the geometry tasks, so both paths run on a 2-core cluster.
WIDE = {"workers": 2, "cpus_per_worker": 0.5}


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> Path:
    """6 jobs (spot and suzanne, 3 seeds each) and a corrupt OBJ, as a jobs.jsonl."""
    folder = tmp_path_factory.mktemp("jobs")
    for name in ("spot.obj", "suzanne.obj"):
        shutil.copy(BUNDLED / name, folder / name)
    (folder / "broken.obj").write_text("this is not a mesh\nv 1 2\n")
    lines = [
        {"input": f"{stem}.obj", "output": f"{stem}_{seed}.glb", "settings": {**TINY, "seed": seed}}
        for stem in ("spot", "suzanne")
        for seed in range(3)
    ]
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def good(jobs: Path, n: int = 6):
    return read_jobs(jobs, "red brick")[:n]


def broken(jobs: Path):
    return BatchItem(str(jobs.parent / "broken.obj"), "red brick", "broken.glb", TINY)


def statuses(out: Path) -> dict:
    data = json.loads((out / "summary.json").read_text())
    return {Path(i["output"]).name: i for i in data["items"]}


def workers_gone(wait_s: float = 10.0) -> bool:
    """The batch kills its workers when it ends (ray.kill is asynchronous: their names linger a moment)."""
    deadline = time.monotonic() + wait_s
    while ray.util.list_named_actors() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not ray.util.list_named_actors()


def texture(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path.with_suffix(".png")).convert("RGB"), np.float32)


@pytest.fixture(scope="module")
def ray_run(jobs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray")
    return out, run_batch_ray([*good(jobs), broken(jobs)], out, **WIDE)


def test_same_textures_as_in_process(ray_run, jobs, tmp_path):
    out, report = ray_run
    local = run_batch(good(jobs), tmp_path)
    assert report.count(DONE) == local.count(DONE) == 6
    for item in good(jobs):
        a, b = texture(out / item.output), texture(tmp_path / item.output)
        assert a.std() > 1 and np.allclose(a, b, atol=2), item.output  # thread counts differ: last-bit float noise
    assert not (texture(out / "spot_0.glb") == texture(out / "spot_1.glb")).all()  # the seeds reached the workers


def test_corrupt_mesh_fails_alone(ray_run):
    out, report = ray_run
    items = statuses(out)
    assert items["broken.glb"]["status"] == FAILED and "broken.obj" in items["broken.glb"]["error"]
    assert items["broken.glb"]["attempts"] == 1 and not (out / "broken.glb").exists()
    assert sum(i["status"] == DONE for i in items.values()) == 6 and report.failed == 1


def test_rerun_skips_finished(ray_run, jobs):
    out, _ = ray_run
    report = run_batch_ray([*good(jobs), broken(jobs)], out, **WIDE)
    assert report.count(SKIPPED) == 6 and report.failed == 1  # the corrupt mesh is tried again, and fails again
    assert json.loads((out / "summary.json").read_text())["state"] == "finished"


def test_killed_worker_is_replaced_and_item_retried(jobs, tmp_path):
    killed = []

    def kill_one(p):
        if p.result is not None and not killed:
            name = sorted(n for n in ray.util.list_named_actors() if n.startswith("meshdream-batch-"))[0]
            ray.kill(ray.get_actor(name))
            killed.append(name)

    report = run_batch_ray(good(jobs, 4), tmp_path, retries=1, progress=kill_one, **WIDE)
    items = statuses(tmp_path)
    assert killed and report.count(DONE) == 4 and all(i["status"] == DONE for i in items.values())
    assert max(i["attempts"] for i in items.values()) == 2  # the item on (or next sent to) the dead worker
    assert workers_gone()


def test_cancel_leaves_valid_summary(jobs, tmp_path):
    token = CancelToken()

    def cancel_after_first(p):
        if p.result is not None:
            token.cancel()

    report = run_batch_ray(good(jobs), tmp_path, progress=cancel_after_first, cancel=token, **WIDE)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert report.cancelled and data["state"] == "cancelled" and 1 <= data["done"] < 6
    assert all(Path(i["output"]).exists() for i in data["items"])
    assert not list(tmp_path.glob(".partial-*"))  # running items stopped at a step and cleaned up


def test_cli_ray(jobs, tmp_path):
    two = jobs.parent / "two.jsonl"  # beside the meshes its relative inputs name
    two.write_text("\n".join(jobs.read_text().splitlines()[:2]) + "\n")
    argv = ["batch", "--jobs", str(two), "--prompt", "red brick", "--out", str(tmp_path / "o")]
    assert main([*argv, "--ray", "local", "--workers", "1"]) == 0  # joins the running cluster
    assert [i["status"] for i in statuses(tmp_path / "o").values()] == [DONE, DONE]


def test_bad_model_stops_the_batch(jobs, tmp_path):
    with pytest.raises(MeshDreamError) as info:
        run_batch_ray(good(jobs, 2), tmp_path, model=str(tmp_path / "no-such-model"), workers=1)
    assert "no-such-model" in str(info.value) and workers_gone()


def test_plan_and_missing_ray(monkeypatch):
    assert plan_workers({"CPU": 16, "GPU": 4}, None, 1, 1) == (4, {"num_cpus": 1, "num_gpus": 1}, True)
    assert plan_workers({"CPU": 8}, None, 1, 2) == (3, {"num_cpus": 2}, True)
    assert plan_workers({"CPU": 2}, 2, 1, 1) == (2, {"num_cpus": 1}, False)  # no core left: workers load meshes
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MeshDreamError, match=r"meshdream\[ray\]"):
        import_ray()
