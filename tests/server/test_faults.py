"""Issue 25 against a real `meshdream serve` on 127.0.0.1: long polls that never block the server, results that
stay until fetched or expired, and settings refused at submit (real sockets, real processes, the built-in model)."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from meshdream import client

from tests.conftest import asset
from tests.server.test_server import SHAPE, SMALL, Server, raw

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("faults")).wait_ready()
    yield s
    s.stop()


def _health_ms(c: client.Client) -> float:
    t = time.perf_counter()
    assert c.health()["status"] == "ok"
    return (time.perf_counter() - t) * 1000


def test_health_answers_at_once_with_60_abandoned_and_45_live_long_polls(server):
    c = client.Client(server.url)
    running = c.submit_texture(str(asset("spot.obj")), "oak", **{**SMALL, "steps": 200})
    queued = c.submit_shape("chair", **SHAPE)  # waits behind `running`: its polls wait the whole 30 s
    s = c.status(running)
    while not (s["stage"] == "denoise" and s["step"] >= 1):
        s = c.status(running, after=s["version"], wait=10)
    version = c.status(queued)["version"]

    abandoned = []  # sent, then the client goes away without reading the answer
    for _ in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /v1/jobs/{queued}?wait=30&after={version} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        abandoned.append(sock)
    deadline = time.monotonic() + 20
    while c.health()["polls"] < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.health()["polls"] == 60
    for sock in abandoned:
        sock.close()
    while c.health()["polls"] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.health()["polls"] == 0  # each poll ended when its client left, not 30 s later

    stop, seen, errors = threading.Event(), [0] * 45, []

    def poll(k: int) -> None:  # a well-behaved client: long polls the running job until it ends
        try:
            mine = client.Client(server.url)
            st = mine.status(running)
            while st["state"] in ("queued", "running") and not stop.is_set():
                st = mine.status(running, after=st["version"], wait=30)
                seen[k] += 1
        except Exception as exc:
            errors.append(exc)

    pollers = [threading.Thread(target=poll, args=(k,), daemon=True) for k in range(45)]
    for t in pollers:
        t.start()
    while min(seen) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    # 60 more abandoned polls, left open this time (a client that hangs): they hold nothing either.
    hanging = []
    for _ in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /v1/jobs/{queued}?wait=30&after={version} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        hanging.append(sock)
    times = sorted(_health_ms(c) for _ in range(15))
    t = time.perf_counter()
    submitted = c.submit_shape("lamp", **SHAPE)
    submit_ms = (time.perf_counter() - t) * 1000
    print(
        f"health under 60 hanging + 45 live polls: median {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms;"
        f" submit {submit_ms:.1f} ms"
    )
    assert statistics.median(times) < 100
    assert c.status(submitted)["state"] == "queued"
    for sock in hanging:
        sock.close()
    c.cancel(running)
    stop.set()
    for t in pollers:
        t.join(60)
    assert not errors and all(not t.is_alive() for t in pollers)
    assert c.wait(queued).points.shape == (256, 3)


def _finished(c: client.Client, job: str) -> dict:
    """Wait for the job to finish without fetching its result."""
    s = c.status(job)
    while s["state"] in ("queued", "running"):
        s = c.status(job, after=s["version"], wait=30)
    return s


def test_finished_results_are_not_evicted_by_another_clients_submit(server):
    owner, other = client.Client(server.url), client.Client(server.url)
    jobs = [owner.submit_shape("chair", **{**SHAPE, "seed": k}) for k in range(40)]
    for job in jobs:
        assert _finished(owner, job)["state"] == "done"
    other.wait(other.submit_shape("lamp", **SHAPE))
    results = [owner.result(job) for job in jobs]  # every one still there, and its own
    assert len({np.asarray(r.points).tobytes() for r in results}) == 40
    s = owner.status(jobs[0])
    assert 3500 < s["expires"] - s["finished"] <= 3600


def test_result_budget_evicts_fetched_results_first_and_refuses_rather_than_lose_one(tmp_path):
    points = SHAPE["n_points"] * 3 * 4  # one shape job's result: float32 points
    s = Server(tmp_path, "--keep-results-mb", str(6.5 * points / 2**20)).wait_ready()
    try:
        c = client.Client(s.url)
        jobs = []
        for k in range(7):  # 7 unfetched results: past the budget of 6.5
            jobs.append(c.submit_shape("chair", **{**SHAPE, "seed": k}))
            _finished(c, jobs[-1])
        with pytest.raises(client.ClientError) as err:
            c.submit_shape("lamp", **SHAPE)
        assert err.value.status == 503 and "results no client has fetched yet" in err.value.message
        assert "--keep-results-mb" in err.value.message
        assert all(c.status(job)["state"] == "done" for job in jobs)  # nothing lost
        first = c.result(jobs[0]).points  # fetched: now it may go
        lamp = c.submit_shape("lamp", **SHAPE)  # room made by evicting the fetched result
        status, body = raw(s.url, "GET", f"/v1/jobs/{jobs[0]}/result")
        assert status == 404 and "fetched and then evicted" in body["error"] and "--keep-results-mb" in body["error"]
        assert np.asarray(first).shape == (SHAPE["n_points"], 3)
        assert all(np.asarray(c.result(job).points).shape == (SHAPE["n_points"], 3) for job in jobs[1:])
        assert c.wait(lamp).points.shape == (SHAPE["n_points"], 3)
    finally:
        s.stop()


def test_results_expire_after_the_stated_time(tmp_path):
    s = Server(tmp_path, "--keep-results-s", "1").wait_ready()
    try:
        c = client.Client(s.url)
        job = c.submit_shape("chair", **SHAPE)
        done = _finished(c, job)
        assert done["expires"] == pytest.approx(done["finished"] + 1)
        while time.time() < done["expires"] + 0.2:
            time.sleep(0.1)
        status, body = raw(s.url, "GET", f"/v1/jobs/{job}")
        assert status == 404 and "expired" in body["error"] and "kept 1 s" in body["error"]
        status, body = raw(s.url, "GET", "/v1/jobs/0123abc")
        assert status == 404 and "No job '0123abc'" in body["error"]
    finally:
        s.stop()


def _refused(url: str, job: dict) -> str:
    """Submit `job` as raw JSON; it must be refused with 422 at once. Returns the message."""
    import json

    status, body = raw(url, "POST", "/v1/jobs", json.dumps(job).encode())
    assert status == 422, body
    return body["error"]


def test_every_setting_is_checked_at_submit_against_the_servers_limits(server):
    spot = client._mesh(str(asset("spot.obj")), "auto")
    texture = {"kind": "texture", "mesh": spot, "prompt": "oak"}
    cases = [
        ({**texture, "settings": {"steps": -5}}, "settings.steps: -5 is out of range; this server takes 1 to 200"),
        ({**texture, "settings": {"n_views": 0}}, "settings.n_views: 0 is out of range"),
        ({**texture, "settings": {"texture_size": 1000}}, "settings.texture_size: Texture size 1000 must be a"),
        ({**texture, "settings": {"texture_size": 32768}}, "1 to 4096 (serve --max-texture-size)"),
        ({**texture, "settings": {"texture_size": 65536}}, "settings.texture_size: 65536 is out of range"),
        ({**texture, "settings": {"view_resolution": 4096}}, "1 to 2048 (serve --max-view-resolution)"),
        ({**texture, "settings": {"view_resolution": 1024, "refine_scale": 4}}, "settings.refine_scale: views refined"),
        ({**texture, "settings": {"preset": "fast"}}, "Preset 'fast' is unknown; use one of quick, full"),
        ({"kind": "shape", "prompt": "chair", "settings": {"steps": -3}}, "settings.steps: -3 is out of range"),
        ({"kind": "shape", "prompt": "chair", "settings": {"n_points": 1e9}}, "(serve --max-points)"),
        ({"kind": "shape", "prompt": "chair", "mesh": {"face_budget": 10**8}}, "mesh.face_budget: 100000000 is out"),
        ({"kind": "shape", "prompt": "chair", "mesh": {"resolution": 5000}}, "mesh.resolution: 5000 is out of range"),
    ]
    for job, message in cases:
        assert message in _refused(server.url, job)
    camera = {"view": np.eye(4).tolist(), "resolution": 4096}
    assert "camera.resolution: 4096 is out of range" in _refused(
        server.url, {"kind": "project", "mesh": spot, "prompt": "oak", "camera": camera}
    )
    assert client.Client(server.url).health()["queue"] == 0  # none of them was queued


def test_meshes_must_have_faces_given_as_integers(server):
    c = client.Client(server.url)
    vertices = np.eye(3)
    empty = {"vertices": client._array(vertices), "faces": client._array(np.zeros((0, 3), np.int32))}
    floats = {"vertices": vertices.tolist(), "faces": [[0.0, 1.0, 2.0]]}
    float_bytes = {"vertices": client._array(vertices), "faces": client._array(np.array([[0, 1, 2]], np.float32))}
    message = _refused(server.url, {"kind": "texture", "mesh": empty, "prompt": "a"})
    assert "mesh.faces: the mesh has no faces" in message
    for mesh in (floats, float_bytes):
        message = _refused(server.url, {"kind": "texture", "mesh": mesh, "prompt": "oak"})
        assert "mesh.faces: must hold integers" in message, message
    # JSON integers and integer dtypes still go through
    job = c.submit_texture({"vertices": vertices, "faces": [[0, 1, 2]]}, "oak", n_views=1, steps=1, texture_size=64)
    c.cancel(job)


def test_models_are_only_those_the_server_lists_and_refusals_do_not_reveal_paths(server, tmp_path):
    spot = client._mesh(str(asset("spot.obj")), "auto")
    messages = {}
    for path in ("/etc/passwd", "/no/such/dir", str(tmp_path), "../../etc"):
        job = {"kind": "texture", "mesh": spot, "prompt": "oak", "model": path}
        messages[path] = _refused(server.url, job).replace(repr(path), "NAME")
        options = {"spec": "builtin", "options": {"controlnet": path}}
        assert "model.options.controlnet:" in _refused(server.url, {**job, "model": options})
        own_uvs = client._mesh(str(asset("spot.obj")), "never")
        upscale = {"kind": "upscale", "mesh": own_uvs, "texture": client._image(np.zeros((64, 64, 3), np.uint8))}
        message = _refused(server.url, {**upscale, "settings": {"upscaler": path}})
        assert message.replace(repr(path), "NAME") == messages[path].replace("model:", "settings.upscaler:")
    assert len(set(messages.values())) == 1, messages  # the same words whether or not the path exists
    assert "is not a model this server offers; GET /v1/models lists" in messages["/etc/passwd"]
    listed = client.Client(server.url).models()
    assert [u["id"] for u in listed["upscalers"]] == ["builtin", "lanczos"]
    assert listed["limits"]["texture_size"] == 4096 and listed["limits"]["steps"] == 200


def test_images_over_the_size_limit_are_refused_before_they_are_decoded(server):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (8192, 8192)).save(buf, format="PNG")  # a few kB that decode to 200 MB of RGB floats
    spot = client._mesh(str(asset("spot.obj")), "never")
    job = {"kind": "upscale", "mesh": spot, "texture": {"png": base64.b64encode(buf.getvalue()).decode()}}
    message = _refused(server.url, job)
    assert "texture: is 8192 x 8192 pixels, over this server's limit of 4096" in message, message


def test_models_dir_entries_are_listed_and_named_by_name_and_allow_paths_is_loopback_only(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken_x2.pth").write_bytes(b"not a model")
    (models / "notes.txt").write_text("not listed")
    s = Server(tmp_path, "--models-dir", str(models)).wait_ready()
    try:
        c = client.Client(s.url)
        listed = c.models()
        assert [u["id"] for u in listed["upscalers"]] == ["builtin", "lanczos", "broken_x2.pth"]
        assert "broken_x2.pth" in [m["id"] for m in listed["texture_models"]]
        texture = np.zeros((64, 64, 3), np.uint8)
        job = c.submit_upscale(str(asset("spot.obj")), texture, upscaler="broken_x2.pth")  # accepted: it is listed
        with pytest.raises(client.ClientError):
            c.wait(job)
        assert c.status(job)["state"] == "failed"  # loaded from the models folder, where it proved broken
        with pytest.raises(client.ClientError, match="is not a model this server offers"):
            c.submit_upscale(str(asset("spot.obj")), texture, upscaler=str(models / "broken_x2.pth"))
    finally:
        s.stop()
    refused = subprocess.run(
        [sys.executable, "-m", "meshdream", "serve", "--host", "0.0.0.0", "--token", "t", "--allow-paths"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "--allow-paths" in refused.stderr and "Traceback" not in refused.stderr


def test_a_private_worker_takes_paths(tmp_path):
    s = Server(tmp_path, "--allow-paths").wait_ready()
    try:
        c = client.Client(s.url)
        texture = np.zeros((64, 64, 3), np.uint8)
        with pytest.raises(client.ClientError, match="does not exist; check the path"):  # the core's own words
            c.wait(c.submit_upscale(str(asset("spot.obj")), texture, upscaler=str(tmp_path / "missing.pth")))
    finally:
        s.stop()


def test_upscalers_are_loaded_once_and_kept_like_models(server):
    c = client.Client(server.url)
    texture = np.zeros((64, 64, 3), np.uint8)
    for _ in range(2):
        assert "load_model" in c.wait(c.submit_upscale(str(asset("spot.obj")), texture)).timings  # builtin, x2
    assert [m for m in c.health()["models"] if m.startswith("upscaler")] == ["upscaler builtin x2"]  # one, kept
