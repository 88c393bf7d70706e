"""The `create` job kind (issue 28) through a real `meshdream serve` on 127.0.0.1 and the stdlib client."""

from __future__ import annotations

import io

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import client
from meshdream.shapes import is_closed
from PIL import Image

from tests.conftest import khronos_issues
from tests.server.test_server import Server

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

CREATE = dict(n_views=2, view_resolution=64, texture_size=64, steps=3, shape_steps=6, face_budget=3000, seed=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server")).wait_ready()
    yield s
    s.stop()


def test_a_create_job_returns_the_in_process_mesh_and_texture(server, tmp_path):
    c = client.Client(server.url)
    r = c.wait(c.submit_create("a tall oak chair, sparkly", pbr=True, **CREATE))
    assert r.kind == "create" and r.prompts == {"shape": "tall chair", "texture": "oak"}
    assert "sparkly" in " ".join(c.status(r.id)["warnings"])
    assert {"shape", "mesh", "unwrap", "texture", "queued", "job"} <= set(r.timings)
    ref = meshdream.create_asset("a tall oak chair", pbr=True, **CREATE)
    texture = np.asarray(Image.open(io.BytesIO(r.texture_png)), np.float32) / 255
    np.testing.assert_allclose(texture, ref.texture.texture, atol=2 / 255)
    assert set(r.maps_png) == {"roughness", "metallic", "normal"}
    # The mesh comes back as a GLB (in the shape's own frame) and as arrays, closed once its seams are welded.
    glb = trimesh.load(io.BytesIO(r.glb), file_type="glb", force="mesh")
    assert len(glb.faces) == len(ref.mesh.faces) == r.mesh["faces"].shape[0]
    assert glb.visual.material.baseColorTexture.size == (64, 64)
    arrays = trimesh.Trimesh(np.asarray(r.mesh["vertices"]), np.asarray(r.mesh["faces"]), process=False)
    assert is_closed(arrays)
    paths = r.save(tmp_path / "chair.glb")
    assert khronos_issues(tmp_path / "chair.glb")["numErrors"] == 0 and len(paths) == 5


def test_a_create_job_without_a_shape_fails_naming_the_shapes_and_bad_settings_are_refused(server):
    c = client.Client(server.url)
    with pytest.raises(client.ClientError, match="chair, table"):
        c.wait(c.submit_create("an oak dragon", **CREATE))
    with pytest.raises(client.ClientError, match="shape_steps: 500 is out of range"):
        c.submit_create("a chair", shape_steps=500)
    with pytest.raises(client.ClientError, match="shape_model"):
        c.submit_create("a chair", shape_model="/tmp/elsewhere.safetensors")
