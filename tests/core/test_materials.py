"""Meshes with several materials (OBJ `usemtl` groups, glTF primitives): issue 15, item 2."""

import json
import struct

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.geometry import to_user_frame
from PIL import Image

from tests.conftest import khronos_issues
from tests.cube_meshes import corners, cube_obj

SMALL = dict(n_views=4, view_resolution=64, texture_size=128, steps=2)
RED_BLUE = ["red"] * 3 + ["blue"] * 3


@pytest.fixture(scope="module")
def builtin():
    return meshdream.load_generator("builtin")


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    """Two materials that use the same thirds of the UV square: each needs a texture of its own."""
    path = tmp_path_factory.mktemp("two") / "two.obj"
    return cube_obj(path, [((k % 3) / 3, 0) for k in range(6)], size=1 / 3, materials=RED_BLUE)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Two materials laid out side by side in one UV square: one texture can serve both."""
    path = tmp_path_factory.mktemp("shared") / "shared.obj"
    return cube_obj(path, [(k % 3 / 3, k // 3 / 3) for k in range(6)], size=1 / 3, materials=RED_BLUE)


@pytest.fixture(scope="module")
def two_textures(overlapping, builtin):
    mesh = meshdream.load_mesh(overlapping)
    return mesh, meshdream.texture_mesh(mesh, "brown wood", builtin, **SMALL)


def _glb_json(path):
    data = path.read_bytes()
    size = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20 : 20 + size])


def test_load_keeps_each_material_and_its_uvs(overlapping):
    mesh = meshdream.load_mesh(overlapping, normalize=False)
    info = meshdream.mesh_info(mesh)
    assert sorted(info.materials) == ["blue", "red"] and info.udim_tiles == ()
    assert not info.unwrapped  # overlapping only across materials: kept, not re-unwrapped
    raw = trimesh.load(overlapping, process=False)  # a Scene: one part per material
    np.testing.assert_allclose(corners(mesh), corners(trimesh.util.concatenate(list(raw.geometry.values()))))
    # Every face keeps its material: the +x, -x, +y faces are red.
    names = np.array(info.materials)[mesh.face_attributes["material"]]
    normals = np.round(mesh.face_normals).astype(int)
    assert set(map(tuple, normals[names == "red"])) == {(1, 0, 0), (-1, 0, 0), (0, 1, 0)}


def test_two_material_cube_gives_two_textures_and_a_clean_glb(two_textures, tmp_path):
    mesh, result = two_textures
    assert sorted(result.textures) == ["blue", "red"]
    assert all(t.shape == (128, 128, 3) and t.dtype == np.float32 for t in result.textures.values())
    assert result.texture.shape == (256, 256, 3) and result.weight.shape == (256, 256)  # the two pages' atlas
    for name, texture in result.textures.items():
        # Each page has colour wherever its own material's faces lie (the other material's UVs are elsewhere).
        sub = meshdream.geometry.pages.material_mesh(mesh, name)
        assert meshdream.mesh_info(sub).materials == (name,)
        covered = meshdream.uv_maps(sub, 128).coverage
        assert covered.any() and (texture[covered].max(axis=-1) > 0).all()
    assert sorted(meshdream.mesh_info(mesh).materials) == ["blue", "red"]

    path = meshdream.save_textured(mesh, result.textures, tmp_path / "cube.glb")
    issues = khronos_issues(path)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    gltf = _glb_json(path)
    assert sorted(m["name"] for m in gltf["materials"]) == ["blue", "red"]
    assert all("baseColorTexture" in m["pbrMetallicRoughness"] for m in gltf["materials"])
    back = meshdream.load_mesh(path, normalize=False)
    assert sorted(meshdream.mesh_info(back).materials) == ["blue", "red"]
    np.testing.assert_allclose(corners(back), corners(to_user_frame(mesh)), atol=1e-6)  # glTF's v-flip undone


def test_obj_writes_every_material_with_its_texture(two_textures, tmp_path):
    mesh, result = two_textures
    path = meshdream.save_textured(mesh, result.textures, tmp_path / "cube.obj")
    mtl = (tmp_path / "cube.mtl").read_text()
    assert "newmtl red" in mtl and "map_Kd cube_red.png" in mtl and "map_Kd cube_blue.png" in mtl
    for name in ("red", "blue"):
        image = np.asarray(Image.open(tmp_path / f"cube_{name}.png"))
        np.testing.assert_array_equal(image, np.round(result.textures[name] * 255).astype(np.uint8))
    back = meshdream.load_mesh(path, normalize=False)
    assert sorted(meshdream.mesh_info(back).materials) == ["blue", "red"]
    np.testing.assert_allclose(corners(back), corners(to_user_frame(mesh)), atol=1e-6)
    with pytest.raises(meshdream.OutputExistsError):
        meshdream.save_textured(mesh, result.textures, path)


def test_shared_or_per_material_and_clear_errors(shared, overlapping, builtin, tmp_path):
    mesh = meshdream.load_mesh(shared)
    one = meshdream.texture_mesh(mesh, "brown wood", builtin, **SMALL)
    assert one.textures == {} and one.texture.shape == (128, 128, 3)  # side by side: one texture serves both
    path = meshdream.save_textured(mesh, one.texture, tmp_path / "shared.glb")
    assert sorted(m["name"] for m in _glb_json(path)["materials"]) == ["blue", "red"]
    both = meshdream.texture_mesh(mesh, "brown wood", builtin, per_material=True, **SMALL)
    assert sorted(both.textures) == ["blue", "red"]

    apart = meshdream.load_mesh(overlapping)
    with pytest.raises(meshdream.InvalidParameterError, match="per_material=True"):
        meshdream.texture_mesh(apart, "brown wood", builtin, per_material=False, **SMALL)
    with pytest.raises(meshdream.InvalidParameterError, match="one image per material"):
        meshdream.save_textured(apart, one.texture, tmp_path / "wrong.glb")
    with pytest.raises(meshdream.InvalidParameterError, match="materials are"):
        meshdream.save_textured(apart, {"red": one.texture}, tmp_path / "wrong.glb")
    assert not (tmp_path / "wrong.glb").exists()


def test_a_prompt_per_material(overlapping, builtin):
    mesh = meshdream.load_mesh(overlapping)
    result = meshdream.texture_mesh(mesh, {"red": "red brick", "blue": "blue marble"}, builtin, **SMALL)
    assert sorted(result.textures) == ["blue", "red"] and len(result.views) == 8  # one run of 4 views each
    red, blue = (result.textures[k].reshape(-1, 3).mean(axis=0) for k in ("red", "blue"))
    assert red[0] > red[2] and blue[2] > blue[0]
    with pytest.raises(meshdream.InvalidParameterError, match="one prompt per material"):
        meshdream.texture_mesh(mesh, {"red": "red brick"}, builtin, **SMALL)
