"""UV layouts on UDIM tiles 1001+: kept, textured tile by tile in one run, saved per tile or as a GLB atlas
(issue 15, item 3)."""

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.geometry.texture import sample_texture
from meshdream.geometry.unwrap import udim_tiles
from PIL import Image

from tests.conftest import khronos_issues
from tests.cube_meshes import corners, cube_obj

SMALL = dict(n_views=4, view_resolution=64, texture_size=128, steps=2)
TILES = [str(1001 + k) for k in range(6)]


@pytest.fixture(scope="module")
def udim_cube(tmp_path_factory):
    """Face k of the cube on tile 1001 + k (u in [k, k + 1])."""
    return cube_obj(tmp_path_factory.mktemp("udim") / "cube.obj", [(k, 0) for k in range(6)])


@pytest.fixture(scope="module")
def textured(udim_cube):
    mesh = meshdream.load_mesh(udim_cube)
    return mesh, meshdream.texture_mesh(mesh, "red brick", meshdream.load_generator("builtin"), **SMALL)


def test_udim_layouts_are_told_apart():
    quad = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    np.testing.assert_array_equal(udim_tiles(np.r_[quad, quad + [2, 1]], faces), [1001, 1001, 1013, 1013])
    np.testing.assert_array_equal(udim_tiles(np.r_[quad + [1, 0], quad + [1, 0]], faces), [1002] * 4)
    assert udim_tiles(np.r_[quad, quad], faces) is None  # tile 1001 alone: an ordinary layout
    assert udim_tiles(np.r_[quad, quad + [0.5, 0]], faces) is None  # a face across the border of 1001 and 1002
    assert udim_tiles(np.r_[quad, quad - [1, 0]], faces) is None  # u < 0 is no UDIM tile


def test_load_keeps_the_udim_layout(udim_cube, tmp_path):
    mesh = meshdream.load_mesh(udim_cube)
    info = meshdream.mesh_info(mesh)
    assert info.udim_tiles == tuple(int(t) for t in TILES) and not info.unwrapped
    raw = trimesh.load(udim_cube, process=False)
    np.testing.assert_allclose(corners(meshdream.geometry.to_user_frame(mesh)), corners(raw), atol=1e-9)
    # A layout far outside 0..1 that is no UDIM layout (faces across tile borders) is still unwrapped.
    repeats = cube_obj(tmp_path / "repeats.obj", [(k / 2, 0) for k in range(6)], size=2.0)
    assert meshdream.mesh_info(meshdream.load_mesh(repeats)).unwrapped


def test_six_tile_images_and_the_uvs_unchanged(textured, udim_cube, tmp_path):
    mesh, result = textured
    assert sorted(result.textures) == TILES
    assert all(t.shape == (128, 128, 3) for t in result.textures.values())
    assert result.texture.shape == (512, 512, 3)  # 6 pages in a 4 x 4 atlas
    path = meshdream.save_textured(mesh, result.textures, tmp_path / "cube.obj")
    for tile in TILES:
        image = np.asarray(Image.open(tmp_path / f"cube.{tile}.png"))
        np.testing.assert_array_equal(image, np.round(result.textures[tile] * 255).astype(np.uint8))
        assert image[16:-16, 16:-16].max(axis=-1).min() > 0  # each tile's face is painted all over
    assert "map_Kd cube.<UDIM>.png" in (tmp_path / "cube.mtl").read_text()
    back = trimesh.load(path, process=False)
    np.testing.assert_allclose(corners(back), corners(trimesh.load(udim_cube, process=False)), atol=1e-6)
    assert meshdream.mesh_info(meshdream.load_mesh(path)).udim_tiles == tuple(int(t) for t in TILES)
    with pytest.raises(meshdream.InvalidParameterError, match="one image per tile"):
        meshdream.save_textured(mesh, result.texture, tmp_path / "atlas.obj")
    with pytest.raises(meshdream.InvalidParameterError, match="UDIM tiles"):
        meshdream.texture_mesh(mesh, "red brick", per_material=True, **SMALL)


def test_glb_atlas_renders_the_same_as_the_tiles(textured, tmp_path):
    mesh, result = textured
    meshdream.save_textured(mesh, result.textures, tmp_path / "cube.obj")  # the tile images
    path = meshdream.save_textured(mesh, result.textures, tmp_path / "cube.glb")
    issues = khronos_issues(path)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    glb = trimesh.load(path, force="mesh", process=False)
    atlas = np.asarray(glb.visual.material.baseColorTexture.convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(atlas, np.round(result.texture * 255) / 255, atol=1e-6)
    assert glb.visual.uv.min() >= 0 and glb.visual.uv.max() <= 1

    # Points spread over every face: their colour through the GLB's atlas UVs and through the tile images.
    user = meshdream.geometry.to_user_frame(mesh)
    np.testing.assert_allclose(glb.triangles, user.triangles, atol=1e-6)  # the same faces, corners in order
    bary = np.random.default_rng(0).dirichlet(np.ones(3) * 2, size=50)
    on_tiles = np.einsum("nk,fkc->fnc", bary, user.visual.uv[user.faces])
    on_atlas = np.einsum("nk,fkc->fnc", bary, glb.visual.uv[glb.faces])
    for f in range(len(user.faces)):
        tile = np.floor(on_tiles[f].mean(axis=0))
        image = np.asarray(Image.open(tmp_path / f"cube.{int(1001 + tile[0] + 10 * tile[1])}.png"), np.float32) / 255
        np.testing.assert_allclose(
            sample_texture(atlas, on_atlas[f]), sample_texture(image, on_tiles[f] - tile), atol=1e-5
        )
