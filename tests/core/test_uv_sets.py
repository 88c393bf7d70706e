"""Choosing the UV set of a glTF / GLB file with several (TEXCOORD_0, TEXCOORD_1): issue 15, item 5."""

import json
import struct

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.geometry import to_user_frame


def _uv0(xy):
    return (xy + 1) / 2


def _uv1(xy):  # the same layout turned a quarter: inside 0..1 and easy to tell apart
    u = _uv0(xy)
    return np.stack([1 - u[:, 1], u[:, 0]], axis=1)


def _two_uv_sets(tmp_path):
    """A 3x3-vertex grid as .glb and .gltf + .bin, TEXCOORD_0 from trimesh and a TEXCOORD_1 added to the file."""
    g = np.linspace(-1, 1, 3)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    k = np.arange(9).reshape(3, 3)[:-1, :-1].ravel()
    faces = np.concatenate([np.stack([k, k + 1, k + 4], 1), np.stack([k, k + 4, k + 3], 1)])
    grid = trimesh.Trimesh(np.c_[xy, np.zeros(9)], faces, process=False)
    grid.visual = trimesh.visual.TextureVisuals(uv=_uv0(xy), material=trimesh.visual.material.PBRMaterial())
    data = grid.export(file_type="glb")
    size = struct.unpack_from("<I", data, 12)[0]
    gltf = json.loads(data[20 : 20 + size])
    binary = data[28 + size :]
    uv1 = _uv1(xy) * [1, -1] + [0, 1]  # glTF's v runs downwards
    gltf["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": uv1.size * 4})
    gltf["accessors"].append(
        {"bufferView": len(gltf["bufferViews"]) - 1, "componentType": 5126, "count": 9, "type": "VEC2"}
    )
    gltf["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_1"] = len(gltf["accessors"]) - 1
    binary += uv1.astype("<f4").tobytes()
    gltf["buffers"] = [{"byteLength": len(binary)}]
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    (tmp_path / "grid.glb").write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
    (tmp_path / "grid.bin").write_bytes(binary)
    gltf["buffers"] = [{"byteLength": len(binary), "uri": "grid.bin"}]
    (tmp_path / "grid.gltf").write_text(json.dumps(gltf))
    return tmp_path / "grid.glb", tmp_path / "grid.gltf"


def _uv_by_position(mesh):
    """The loaded UVs and the layout each set should give, per vertex (load_mesh may reorder vertices)."""
    xy = to_user_frame(mesh).vertices[:, :2]
    return mesh.visual.uv, xy


def test_first_uv_set_by_default_and_the_chosen_one_on_request(tmp_path):
    for path in _two_uv_sets(tmp_path):
        uv, xy = _uv_by_position(meshdream.load_mesh(path))
        np.testing.assert_allclose(uv, _uv0(xy), atol=1e-6)
        mesh = meshdream.load_mesh(path, uv_set=1)
        uv, xy = _uv_by_position(mesh)
        np.testing.assert_allclose(uv, _uv1(xy), atol=1e-6)
        info = meshdream.mesh_info(mesh)
        assert info.uv_set == 1 and not info.unwrapped


def test_missing_uv_set_says_which_there_are(tmp_path):
    glb, _ = _two_uv_sets(tmp_path)
    with pytest.raises(meshdream.InvalidParameterError, match="TEXCOORD_0, TEXCOORD_1"):
        meshdream.load_mesh(glb, uv_set=2)
    with pytest.raises(meshdream.InvalidParameterError, match="UV set index"):
        meshdream.load_mesh(glb, uv_set=-1)
    with pytest.raises(meshdream.InvalidParameterError, match="only glTF"):
        meshdream.load_mesh(trimesh.creation.box(), uv_set=1)


SMALL = dict(n_views=2, view_resolution=64, texture_size=64, steps=3, seed=0)


def test_texture_mesh_textures_the_chosen_uv_set_of_a_path(tmp_path):
    glb, _ = _two_uv_sets(tmp_path)
    gen = meshdream.load_generator("builtin")
    by_path = meshdream.texture_mesh(glb, "red brick", gen, uv_set=1, **SMALL)
    loaded = meshdream.texture_mesh(meshdream.load_mesh(glb, uv_set=1), "red brick", gen, **SMALL)
    first = meshdream.texture_mesh(glb, "red brick", gen, **SMALL)
    np.testing.assert_array_equal(by_path.texture, loaded.texture)
    assert not np.array_equal(by_path.texture, first.texture)  # the same views baked through another layout
    assert by_path.timings["load_mesh"] > 0 and "unwrap" not in by_path.timings  # its own UVs: nothing unwrapped
    with pytest.raises(meshdream.InvalidParameterError, match="loaded with UV set 1"):
        meshdream.texture_mesh(meshdream.load_mesh(glb, uv_set=1), "red brick", gen, uv_set=0, **SMALL)


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "meshdream.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_uv_set(tmp_path):
    glb, _ = _two_uv_sets(tmp_path)
    tiny = ["--views", "2", "--view-resolution", "64", "--texture-size", "64", "--steps", "3"]
    r = _cli("texture", glb, "--prompt", "red brick", "-o", tmp_path / "out.glb", "--uv-set", "1", *tiny)
    assert r.returncode == 0, r.stderr
    uv, xy = _uv_by_position(meshdream.load_mesh(tmp_path / "out.glb"))
    np.testing.assert_allclose(uv, _uv1(xy), atol=1e-5)  # the result is mapped through TEXCOORD_1
    obj = tmp_path / "box.obj"
    trimesh.creation.box().export(obj)
    r = _cli("texture", obj, "--prompt", "red brick", "-o", tmp_path / "box.glb", "--uv-set", "1")
    assert r.returncode == 2 and "only glTF" in r.stderr and "Traceback" not in r.stderr
