"""PBR jobs (issue 27) through a real `meshdream serve` on 127.0.0.1 and the stdlib client: one result part per
map, the same maps as the core makes in-process, a GLB with them, and material model specs under the rule every
model a job names obeys (listed ones only)."""

from __future__ import annotations

import io
import json
import struct

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import client

from tests.conftest import asset
from tests.server.test_server import SMALL, Server, assert_same_texture, png

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MAPS = ("roughness", "metallic", "normal")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server")).wait_ready()
    yield s
    s.stop()


def glb_json(data: bytes) -> dict:
    """The JSON chunk of a GLB (header: magic, version, length; then chunk length, chunk type)."""
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])


def test_a_pbr_texture_job_gives_the_in_process_maps_as_parts_and_in_its_glb(server, tmp_path):
    c = client.Client(server.url)
    r = c.wait(c.submit_texture(str(asset("spot.obj")), "red brick", pbr=True, **SMALL))
    mesh = meshdream.load_mesh(asset("spot.obj"))
    ref = meshdream.texture_mesh(mesh, "red brick", pbr=True, **SMALL)
    assert sorted(r.maps_png) == sorted(MAPS)
    assert_same_texture(r.texture_png, ref.maps["base_color"])
    for name in MAPS:
        assert_same_texture(r.maps_png[name], ref.maps[name])
    assert png(r.maps_png["roughness"]).shape == (64, 64) and png(r.maps_png["normal"]).shape == (64, 64, 3)
    assert "materials" in r.timings

    gltf = glb_json(r.glb)
    (material,) = gltf["materials"]
    assert {"baseColorTexture", "metallicRoughnessTexture"} <= set(material["pbrMetallicRoughness"])
    assert "normalTexture" in material
    assert all("TANGENT" in p["attributes"] for m in gltf["meshes"] for p in m["primitives"])

    written = r.save(tmp_path / "spot.glb")
    assert [p.rsplit("/", 1)[-1] for p in written] == [
        "spot.glb",
        "spot.png",
        "spot_roughness.png",
        "spot_metallic.png",
        "spot_normal.png",
    ]
    assert (tmp_path / "spot.glb").read_bytes() == r.glb
    with pytest.raises(client.ClientError, match="already exists"):
        r.save(tmp_path / "spot.glb")


def test_without_pbr_a_job_has_no_map_parts_and_the_texture_it_had(server):
    c = client.Client(server.url)
    r = c.wait(c.submit_texture(str(asset("spot.obj")), "red brick", **SMALL))
    assert r.maps_png == {}
    ref = meshdream.texture_mesh(meshdream.load_mesh(asset("spot.obj")), "red brick", **SMALL)
    assert_same_texture(r.texture_png, ref.texture)
    assert "normalTexture" not in glb_json(r.glb)["materials"][0]


def test_a_pbr_restyle_job_gives_maps_and_parts_can_be_fetched_one_by_one(server):
    c = client.Client(server.url)
    checker = np.kron((np.indices((8, 8)).sum(0) % 2), np.ones((8, 8)))[..., None] * [0.8, 0.3, 0.2]
    settings = dict(strength=0.5, n_views=2, view_resolution=64, steps=3, seed=0)
    job = c.submit_restyle(str(asset("spot.obj")), checker.astype(np.float32), "red brick", pbr=True, **settings)
    r = c.wait(job, include=["normal"])
    assert list(r.maps_png) == ["normal"] and r.texture_png is None and r.glb is None
    normal = png(r.maps_png["normal"]).astype(float) / 255 * 2 - 1
    assert normal.shape == (64, 64, 3) and np.median(normal[..., 2]) > 0.5  # tangent space: mostly facing out
    mesh = meshdream.load_mesh(asset("spot.obj"), unwrap="never")
    glb = trimesh.load(io.BytesIO(c.result(job).glb), file_type="glb", force="mesh")
    assert glb.visual.material.normalTexture is not None and len(glb.vertices) >= len(mesh.vertices)


def test_material_models_are_the_listed_ones_only(server):
    c = client.Client(server.url)
    listed = c.models()["material_models"]
    assert listed[0]["id"] == "builtin"
    for spec in ("/etc/passwd", "prs-eth/not-cached"):
        with pytest.raises(client.ClientError, match="not a model this server offers") as err:
            c.submit_texture(str(asset("spot.obj")), "red brick", pbr=True, material_model=spec, **SMALL)
        assert err.value.status == 422 and "settings.material_model" in err.value.message
    with pytest.raises(client.ClientError, match="settings.material_model") as err:
        c.submit_texture(str(asset("spot.obj")), "red brick", pbr=True, material_model=5, **SMALL)
    assert err.value.status == 422
    with pytest.raises(client.ClientError, match="pbr") as err:
        c.submit_texture(str(asset("spot.obj")), "red brick", pbr="sometimes", **SMALL)
    assert err.value.status == 422
    job = c.submit_texture(str(asset("spot.obj")), "red brick", pbr=True, material_model="builtin", **SMALL)
    r = c.wait(job, include=["roughness"])
    assert list(r.maps_png) == ["roughness"]
    assert "load_material_model" in r.timings
    assert any(m.startswith("material model builtin") for m in c.health()["models"])


def test_the_client_asks_for_the_parts_the_server_has():
    from meshdream.server.schema import MAP_PARTS, RESULT_PARTS

    assert client.RESULT_PARTS == RESULT_PARTS and client.MAP_PARTS == MAP_PARTS


def test_a_models_dir_marigold_is_listed_and_named_by_its_folder_name(tmp_path):
    """A Marigold intrinsics pipeline in --models-dir (tiny, random weights, built here: nothing downloaded) is a
    material model jobs may name; it makes albedo, so the job's base colour is de-lit by default."""
    from tests.tiny_models import build_marigold

    build_marigold(tmp_path / "models" / "tiny-marigold", "intrinsics")
    s = Server(tmp_path, "--models-dir", str(tmp_path / "models")).wait_ready()
    try:
        c = client.Client(s.url)
        assert "tiny-marigold" in [m["id"] for m in c.models()["material_models"]]
        job = c.submit_texture(str(asset("spot.obj")), "red brick", pbr=True, material_model="tiny-marigold", **SMALL)
        r = c.wait(job, timeout=600)
        assert sorted(r.maps_png) == sorted(MAPS) and c.status(job)["warnings"] == []
        lit = c.wait(c.submit_texture(str(asset("spot.obj")), "red brick", **SMALL))
        assert r.texture_png != lit.texture_png  # the albedo, not the generated (lit) colour
        undelit = c.submit_texture(
            str(asset("spot.obj")), "red brick", pbr=True, material_model="tiny-marigold", delight=False, **SMALL
        )
        assert_same_texture(c.wait(undelit).texture_png, png(lit.texture_png).astype(np.float32) / 255)
    finally:
        s.stop()
