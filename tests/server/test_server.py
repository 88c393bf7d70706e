"""`meshdream serve` and the stdlib client: real uvicorn processes on 127.0.0.1, real HTTP, the built-in model."""

from __future__ import annotations

import base64
import glob
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import client
from meshdream.images import to_uint8
from PIL import Image

from tests.conftest import asset
from tests.core.test_uv_sets import _two_uv_sets, _uv1

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

SMALL = dict(n_views=2, view_resolution=64, texture_size=64, steps=3, seed=0)
SHAPE = dict(seed=0, steps=4, n_points=256)
CLIENT_FILE = Path(client.__file__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m meshdream serve` as a child process, its output in a log file."""

    def __init__(self, tmp: Path, *args: str, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        with open(self.log, "w") as log:
            command = [sys.executable, "-m", "meshdream", "serve", "--host", host, "--port", str(self.port), *args]
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, token: str | None = None) -> "Server":
        c = client.Client(self.url, token=token)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                c.health()
                return self
            except client.ClientError:
                time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server"), "--max-body-mb", "2").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def builtin():
    return meshdream.load_generator("builtin")


def raw(url: str, method: str, path: str, body: bytes | None = None, token: str | None = None) -> tuple[int, dict]:
    """A request with an arbitrary body: (status, JSON answer)."""
    req = urllib.request.Request(url + path, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def assert_same_texture(png_bytes: bytes, texture: np.ndarray) -> None:
    """Identical on the CPU; on a GPU each process may pick other kernels, which round 1 level in 255 otherwise."""
    diff = np.abs(png(png_bytes).astype(int) - to_uint8(texture))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02
    if meshdream.tensors.pick_device("auto").type == "cpu":
        assert diff.max() == 0


def test_health_and_models(server):
    c = client.Client(server.url)
    h = c.health()
    assert h["status"] == "ok" and h["api"] == "v1" and h["version"] == meshdream.__version__
    assert h["device"] in ("cpu", "cuda", "mps") and h["queue"] == 0 and isinstance(h["models"], list)
    m = c.models()
    assert m["texture_models"][0]["id"] == "builtin" and "chair" in m["shape_categories"]


def test_shape_job_gives_the_in_process_points(server):
    c = client.Client(server.url)
    r = c.wait(c.submit_shape("chair", **SHAPE))
    np.testing.assert_allclose(np.asarray(r.points), meshdream.generate_shape("chair", **SHAPE), atol=1e-6)
    r = c.wait(c.submit_shape("tall table", mesh={"face_budget": 4000}, **SHAPE))
    glb = trimesh.load(io.BytesIO(r.glb), file_type="glb", force="mesh")
    verts = np.asarray(r.mesh["vertices"])
    assert 0 < len(glb.faces) <= 4000 and r.mesh["faces"].shape == (len(glb.faces), 3)
    np.testing.assert_allclose(glb.bounds, [verts.min(0), verts.max(0)], atol=1e-5)
    # The mesh is in the points' own frame (radius 1), not MeshDream's normalized one.
    assert np.abs(np.linalg.norm(verts, axis=1).max() - 1) < 0.15


def test_shape_models_are_the_listed_ones_only(tmp_path, monkeypatch):
    """settings.shape_model passes the gate every model a job names passes: builtin, a cached Shap-E or a models
    folder entry, by name; any other name or path is refused at submit (no server process needed to check)."""
    from huggingface_hub import constants
    from meshdream.errors import InvalidParameterError
    from meshdream.server.models import ModelCatalog
    from meshdream.server.schema import JobIn, Submit, job_request
    from pydantic import TypeAdapter

    from tests.tiny_models import build_shap_e

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    folder = build_shap_e(tmp_path / "models" / "tiny-shap-e")
    ctx = Submit(catalog=ModelCatalog(tmp_path / "models"))
    assert [m["id"] for m in ctx.catalog.shape_models()] == ["builtin", "tiny-shap-e"]

    def resolved(spec):
        job = {"kind": "shape", "prompt": "a red chair", "settings": {"shape_model": spec}}
        return job_request(TypeAdapter(JobIn).validate_python(job), ctx).settings["shape_model"]

    assert resolved("builtin") == "builtin" and resolved("tiny-shap-e") == str(folder)
    for spec in (str(folder), "/etc/passwd", "openai/shap-e"):
        with pytest.raises(InvalidParameterError, match="settings.shape_model: .* not a model this server offers"):
            resolved(spec)
    with pytest.raises(InvalidParameterError, match="as a string"):
        resolved(5)


def test_texture_job_gives_the_in_process_texture(server, builtin):
    c = client.Client(server.url)
    reports = []
    r = c.wait(c.submit_texture(str(asset("spot.obj")), "red brick", **SMALL), progress=reports.append)
    mesh = meshdream.load_mesh(asset("spot.obj"))
    ref = meshdream.texture_mesh(mesh, "red brick", builtin, **SMALL)
    assert_same_texture(r.texture_png, ref.texture)
    np.testing.assert_allclose(np.asarray(r.weight), ref.weight, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(r.seen), ref.weight > 0)
    steps = [s["step"] for s in reports if s["state"] == "running" and s["stage"] == "denoise"]
    assert steps == sorted(set(steps)) and steps[-1] == 3  # a long poll may merge steps that came close together
    assert reports[-1]["state"] == "done" and {"model", "total", "queued", "load_mesh"} <= set(r.timings)
    # The GLB is in the file's own coordinates and carries the texture.
    glb = trimesh.load(io.BytesIO(r.glb), file_type="glb", force="mesh")
    np.testing.assert_allclose(glb.bounds, trimesh.load(asset("spot.obj"), force="mesh").bounds, atol=1e-5)
    assert glb.visual.material.baseColorTexture.size == (64, 64)
    preview = png(base64.b64decode(c.status(r.id, preview=True)["preview_png"]))
    assert preview.shape == (64, 2 * 64 + 4, 3)


def test_project_job_with_a_camera_and_mesh_arrays_in_the_callers_frame(server, builtin):
    """A moved and scaled mesh sent as arrays with per-corner UVs, its camera as a view matrix in that frame,
    paints exactly what the normalized in-process call paints."""
    mesh = meshdream.load_mesh(asset("spot.obj"))
    user_from_norm = trimesh.transformations.compose_matrix(scale=[3, 3, 3], translate=[1, -2, 5])
    vertices = trimesh.transform_points(mesh.vertices, user_from_norm)
    camera = meshdream.Camera.look_at((0.3, 0.4, 3.2), resolution=64)
    view = camera.world_to_camera @ np.linalg.inv(user_from_norm)
    view[:3] *= 3  # rigid again: the camera's own axes, distances in user units
    init = np.full((64, 64, 3), 128, np.uint8)
    c = client.Client(server.url)
    mesh_arrays = {"vertices": vertices, "faces": mesh.faces, "uvs": mesh.visual.uv[mesh.faces]}
    job = c.submit_project(
        mesh_arrays,
        "blue tiles",
        camera={"view": view, "fov": camera.fov, "resolution": 64},
        init_image=init,
        texture_size=64,
        steps=3,
        strength=0.7,
    )
    r = c.wait(job)
    ref = meshdream.texture_mesh(
        mesh,
        "blue tiles",
        builtin,
        strategy="project",
        cameras=[camera],
        init_image=init,
        texture_size=64,
        steps=3,
        strength=0.7,
    )
    assert_same_texture(r.texture_png, ref.texture)
    assert (np.asarray(r.weight) == 0).any() and not r.mesh["unwrapped"]
    np.testing.assert_allclose(np.asarray(r.mesh["vertices"]).min(0), vertices.min(0), atol=1e-4)


def test_settings_left_out_are_the_models_own_as_is_the_size_of_a_camera_without_one(server, builtin):
    """Issue 18, item 4: view resolution and texture size left out are the model's (its card's); a camera sent
    with its aspect only (a viewport's) gets the job's view resolution on its larger side; given values win."""
    c = client.Client(server.url)
    native, size = builtin.native_resolution, builtin.default_texture_size
    camera = meshdream.Camera.look_at((0.3, 0.4, 3.2))
    wide = {"view": camera.world_to_camera, "fov": camera.fov, "aspect": 2.0}
    spot = str(asset("spot.obj"))
    jobs = [
        c.submit_texture(spot, "oak", n_views=1, steps=1),
        c.submit_project(spot, "oak", camera=wide, steps=1),
        c.submit_project(spot, "oak", camera=wide, steps=1, view_resolution=64, texture_size=64),
    ]
    got = []
    for job in jobs:
        r = c.wait(job, include=("texture", "views"))
        got.append((png(r.texture_png).shape[:2], [png(v).shape[:2] for v in r.views_png]))
    assert got == [
        ((size, size), [(native, native)]),
        ((size, size), [(native // 2, native)]),
        ((64, 64), [(32, 64)]),
    ]
    with pytest.raises(client.ClientError, match="give 'resolution' or 'aspect', not both"):
        c.submit_project(spot, "oak", camera={**wide, "resolution": 64})


def test_inpaint_job_fills_transparent_texels(server):
    mesh = meshdream.load_mesh(asset("spot.obj"))
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :32] = (200, 40, 40, 255)  # right half transparent: to fill
    c = client.Client(server.url)
    r = c.wait(c.submit_inpaint(str(asset("spot.obj")), rgba))
    ref = meshdream.inpaint_uv(mesh, rgba[..., :3], rgba[..., 3] == 0)
    np.testing.assert_array_equal(png(r.texture_png), to_uint8(ref))


def checker(size: int = 64) -> np.ndarray:
    """A texture for restyle / upscale jobs: RGBA as DCC tools save it (the server drops the alpha)."""
    y, x = np.mgrid[:size, :size] // 8
    rgba = np.full((size, size, 4), 255, np.uint8)
    rgba[..., 0] = np.where((x + y) % 2, 220, 40)
    rgba[..., 1] = x * 255 // (size // 8)
    rgba[..., 2] = 90
    return rgba


def test_restyle_job_gives_the_in_process_texture(server, builtin):
    c = client.Client(server.url)
    settings = dict(strength=0.5, n_views=2, view_resolution=64, steps=3, seed=0)
    r = c.wait(c.submit_restyle(str(asset("spot.obj")), checker(), "blue tiles", **settings))
    mesh = meshdream.load_mesh(asset("spot.obj"), unwrap="never")
    ref = meshdream.restyle_texture(mesh, checker()[..., :3], "blue tiles", generator=builtin, **settings)
    assert_same_texture(r.texture_png, ref.texture)
    np.testing.assert_allclose(np.asarray(r.weight), ref.weight, atol=1e-6)
    assert {"load_mesh", "load_model", "total", "job"} <= set(r.timings)
    glb = trimesh.load(io.BytesIO(r.glb), file_type="glb", force="mesh")
    assert glb.visual.material.baseColorTexture.size == (64, 64)


def test_upscale_job_gives_the_in_process_texture_and_a_glb(server, tmp_path):
    texture = tmp_path / "checker.png"
    Image.fromarray(checker()).save(texture)  # a file, as a user has it
    c = client.Client(server.url)
    reports = []
    r = c.wait(c.submit_upscale(asset("spot.obj"), texture, scale=2, upscaler="lanczos"), progress=reports.append)
    mesh = meshdream.load_mesh(asset("spot.obj"), unwrap="never")
    ref = meshdream.upscale_texture(mesh, checker()[..., :3], scale=2, upscaler="lanczos")
    np.testing.assert_array_equal(png(r.texture_png), to_uint8(ref))
    assert reports[-1]["state"] == "done" and "upscale" in r.timings and r.weight is None
    glb = trimesh.load(io.BytesIO(r.glb), file_type="glb", force="mesh")
    assert glb.visual.material.baseColorTexture.size == (128, 128)


def test_restyle_and_upscale_refuse_bad_input_with_clear_errors(server):
    c = client.Client(server.url)
    spot = str(asset("spot.obj"))
    refused = [
        (lambda: c.submit_upscale(spot, checker(), scale=3), "settings.scale 3 is not supported; use 2 or 4"),
        (lambda: c.submit_upscale(spot, checker()[:, :48]), "texture: must be square"),
        (lambda: c.submit_upscale(spot, checker()[:48, :48]), "texture: Texture size 48 must be a positive power"),
        (lambda: c.submit_restyle(spot, checker(), "oak", strength=1.5), "strength 1.5 must be in [0, 1]"),
        (lambda: c.submit_restyle(spot, checker(), "oak", colour="red"), "unknown setting 'colour'"),
        (
            lambda: c.submit(
                {"kind": "upscale", "mesh": client._mesh(spot, "always"), "texture": client._image(checker())}
            ),
            "the texture is painted on the mesh's own UVs",
        ),
    ]
    for submit, message in refused:
        with pytest.raises(client.ClientError) as err:
            submit()
        assert err.value.status == 422 and message in err.value.message, err.value.message
    mesh = meshdream.load_mesh(asset("spot.obj"))
    no_uvs = {"vertices": mesh.vertices, "faces": mesh.faces}
    with pytest.raises(client.ClientError, match="The mesh has no UV map"):
        c.wait(c.submit_upscale(no_uvs, checker(), upscaler="lanczos"))
    with pytest.raises(client.ClientError, match="'sharpest' is not a model this server offers") as err:
        c.submit_upscale(spot, checker(), upscaler="sharpest")  # refused at submit: only listed upscalers
    assert err.value.status == 422


def test_uv_set_of_an_uploaded_glb_is_the_one_textured(server, tmp_path):
    glb, _ = _two_uv_sets(tmp_path)
    c = client.Client(server.url)
    r = c.wait(c.submit_texture(glb, "red brick", uv_set=1, **SMALL))
    corners = np.asarray(r.mesh["vertices"])[np.asarray(r.mesh["faces"])].reshape(-1, 3)
    np.testing.assert_allclose(np.asarray(r.mesh["uvs"]).reshape(-1, 2), _uv1(corners[:, :2]), atol=1e-5)
    glb_uv = trimesh.load(io.BytesIO(r.glb), file_type="glb", force="mesh")
    np.testing.assert_allclose(glb_uv.visual.uv, _uv1(glb_uv.vertices[:, :2]), atol=1e-5)
    assert r.timings["unwrap"] == 0 and "load_mesh" in r.timings
    arrays = {"vertices": corners, "faces": np.arange(len(corners)).reshape(-1, 3)}
    with pytest.raises(client.ClientError, match="only glTF"):  # arrays carry one UV set
        c.wait(c.submit_texture(arrays, "red brick", uv_set=1, **SMALL))


def test_two_clients_at_once_are_both_served_in_order(server):
    jobs, errors = {}, []

    def submit_and_wait(name, prompt):
        try:
            c = client.Client(server.url)
            job = c.submit_shape(prompt, **SHAPE)
            jobs[name] = (job, c.wait(job))
        except Exception as exc:  # surfaced below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=submit_and_wait, args=(n, p)) for n, p in (("a", "chair"), ("b", "lamp"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and set(jobs) == {"a", "b"}
    c = client.Client(server.url)
    first, second = sorted((c.status(job) for job, _ in jobs.values()), key=lambda s: s["submitted"])
    assert first["finished"] <= second["started"]  # one worker, submission order
    assert all(r.points.shape == (256, 3) for _, r in jobs.values())


def test_cancel_stops_a_running_job_within_one_step_and_drops_a_queued_one(server):
    c = client.Client(server.url)
    running = c.submit_texture(str(asset("spot.obj")), "oak", **{**SMALL, "steps": 200})
    queued = c.submit_shape("chair", **SHAPE)
    s = c.status(running)
    while not (s["stage"] == "denoise" and s["step"] >= 2):
        s = c.status(running, after=s["version"], wait=10)
        assert s["state"] in ("queued", "running"), s
    assert c.status(queued)["queue_position"] == 0
    c.cancel(queued)
    c.cancel(running)
    with pytest.raises(client.ClientError, match="Cancelled"):
        c.wait(running)
    s = c.status(running)
    assert s["state"] == "cancelled" and s["step"] - s["cancel_step"] <= 1 and s["step"] < 200
    assert c.status(queued)["state"] == "cancelled"
    with pytest.raises(client.ClientError, match="cancelled") as err:
        c.result(running)
    assert err.value.status == 409
    assert c.wait(c.submit_shape("mug", **SHAPE)).points.shape == (256, 3)  # and the worker goes on


def test_a_running_job_shows_a_live_preview_of_its_views(server):
    c = client.Client(server.url)
    job = c.submit_texture(str(asset("spot.obj")), "oak", **{**SMALL, "steps": 200})
    s = c.status(job, preview=True)
    while s["preview_png"] is None:
        assert s["state"] in ("queued", "running"), s
        s = c.status(job, after=s["version"], wait=10, preview=True)
    c.cancel(job)
    assert s["state"] == "running" and s["step"] < 200
    # Built-in model: latent resolution is the view resolution; two views side by side.
    assert png(base64.b64decode(s["preview_png"])).shape == (64, 2 * 64 + 4, 3)
    with pytest.raises(client.ClientError, match="Cancelled"):
        c.wait(job)
    assert c.status(job, preview=True)["preview_png"] is None  # cancelled: no views, the live one is dropped


def test_bad_requests_get_clear_errors(server):
    url = server.url
    status, body = raw(url, "POST", "/v1/jobs", b'{"kind": "shape", "prompt": ')
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = raw(
        url,
        "POST",
        "/v1/jobs",
        json.dumps({"kind": "shape", "prompt": "chair", "settings": {"steps": "many"}}).encode(),
    )
    assert status == 422 and "settings" in body["error"] and "steps" in body["error"] and "integer" in body["error"]
    status, body = raw(
        url, "POST", "/v1/jobs", json.dumps({"kind": "shape", "prompt": "chair", "settings": {"stepz": 3}}).encode()
    )
    assert status == 422 and "unknown setting 'stepz'" in body["error"]
    status, body = raw(
        url,
        "POST",
        "/v1/jobs",
        json.dumps({"kind": "texture", "prompt": "oak", "mesh": {"vertices": [[0, 0]], "faces": [[0, 0, 0]]}}).encode(),
    )
    assert status == 422 and "mesh.vertices" in body["error"] and "shape (N, 3)" in body["error"]
    status, body = raw(url, "POST", "/v1/jobs", json.dumps({"kind": "texture", "prompt": "oak"}).encode())
    assert status == 422 and "mesh: Field required" in body["error"]
    status, body = raw(url, "POST", "/v1/jobs", json.dumps({"kind": "paint"}).encode())
    assert status == 422 and "'texture', 'project', 'inpaint', 'shape'" in body["error"]
    status, body = raw(url, "POST", "/v1/jobs", b'{"kind": "shape", "prompt": "' + b"x" * (3 * 2**20) + b'"}')
    assert status == 413 and "limit" in body["error"]
    status, body = raw(url, "GET", "/v1/jobs/0123abc")
    assert status == 404 and "No job" in body["error"]
    c = client.Client(url)
    with pytest.raises(client.ClientError, match="unknown setting") as err:
        c.submit_shape("chair", colour="red")
    assert err.value.status == 422
    with pytest.raises(client.ClientError, match="No MeshDream server answers"):
        client.Client(f"http://127.0.0.1:{free_port()}").health()


def test_a_failing_job_reports_its_error_and_the_server_keeps_serving(server, tmp_path):
    c = client.Client(server.url)
    with pytest.raises(client.ClientError, match="No known shape category in 'teapot'"):
        c.wait(c.submit_shape("teapot"))
    broken = tmp_path / "broken.obj"
    broken.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    with pytest.raises(client.ClientError) as err:
        c.wait(c.submit_texture(broken, "oak", **SMALL))
    assert "broken.obj" in err.value.message or "mesh" in err.value.message.lower()
    assert c.wait(c.submit_shape("vase", **SHAPE)).points.shape == (256, 3)
    assert c.health()["status"] == "ok"


def test_client_copied_alone_runs_in_an_isolated_python(server, tmp_path):
    shutil.copy(CLIENT_FILE, tmp_path / "client.py")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import client\n"
        f"c = client.Client({server.url!r}); job = c.submit_shape('chair', seed=0, steps=4, n_points=256)\n"
        "r = c.wait(job); pts = r.points.tolist()\n"
        "assert 'numpy' not in sys.modules and 'meshdream' not in sys.modules\n"
        "print(len(pts), len(pts[0]), round(sum(p[1] for p in pts), 3))\n"
    )
    oldest = [shutil.which("python3.9"), *glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9"))]
    pythons = [sys.executable, *[p for p in oldest if p and _runs(p)][:1]]  # and Python 3.9 where there is one
    expected = meshdream.generate_shape("chair", seed=0, steps=4, n_points=256)
    for python in pythons:
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        n, dims, total = out.stdout.split()
        assert (int(n), int(dims)) == (256, 3) and abs(float(total) - expected[:, 1].sum()) < 1e-2


def _runs(python: str) -> bool:
    return subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0


def test_ensure_server_starts_a_server_and_stops_it_at_exit(tmp_path):
    shutil.copy(CLIENT_FILE, tmp_path / "client.py")
    port = free_port()
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import client\n"
        f"c = client.ensure_server(python={sys.executable!r}, port={port})\n"
        f"again = client.ensure_server(port={port})\n"  # already answering: nothing more is started
        "print(c.process.pid, again.process, c.health()['status'])\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    pid, again, status = out.stdout.split()
    assert again == "None" and status == "ok"
    deadline = time.monotonic() + 30
    while _alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(int(pid))
    with pytest.raises(client.ClientError, match="No MeshDream server answers"):
        client.Client(f"http://127.0.0.1:{port}").health()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_serve_without_the_server_extra_names_the_install_command():
    hide_fastapi = (
        "import sys; sys.modules['fastapi'] = None; from meshdream.cli import main; sys.exit(main(['serve']))"
    )
    out = subprocess.run([sys.executable, "-c", hide_fastapi], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "pip install 'meshdream[server]'" in out.stderr and "Traceback" not in out.stderr


def test_token_required_beyond_loopback(tmp_path):
    refused = subprocess.run(
        [sys.executable, "-m", "meshdream", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MESHDREAM_TOKEN"},
    )
    assert refused.returncode == 2 and "token" in refused.stderr and "Traceback" not in refused.stderr
    s = Server(tmp_path, "--token", "s3cret", host="0.0.0.0").wait_ready(token="s3cret")
    try:
        status, body = raw(s.url, "GET", "/v1/health")
        assert status == 401 and "needs a token" in body["error"]
        status, body = raw(s.url, "POST", "/v1/jobs", b"{}", token="guess")
        assert status == 401 and "token is wrong" in body["error"]
        with pytest.raises(client.ClientError) as err:
            client.Client(s.url, token="guess").health()
        assert err.value.status == 401
        assert client.Client(s.url, token="s3cret").health()["status"] == "ok"
    finally:
        s.stop()


def test_idle_unload_then_sigterm_stops_after_the_current_step(tmp_path):
    s = Server(tmp_path, "--idle-unload", "1").wait_ready()
    try:
        c = client.Client(s.url)
        c.wait(c.submit_shape("chair", **SHAPE))
        deadline = time.monotonic() + 20
        while c.health()["models"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.health()["models"] == [] and "unloading shape model" in s.log.read_text()
        job = c.submit_texture(str(asset("spot.obj")), "oak", **{**SMALL, "steps": 200})
        st = c.status(job)
        while not (st["stage"] == "denoise" and st["step"] >= 1):
            st = c.status(job, after=st["version"], wait=10)
        s.proc.send_signal(signal.SIGTERM)
        t = time.monotonic()
        code = s.proc.wait(60)
        assert time.monotonic() - t < 15 and code in (0, -signal.SIGTERM)
        log = s.log.read_text()
        assert f"job {job} cancelled" in log and "worker stopped" in log and "Traceback" not in log
    finally:
        s.stop()
