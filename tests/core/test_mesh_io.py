import dataclasses

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.geometry.unwrap import uvs_usable
from meshdream.texturing.common import Timer
from meshdream.texturing.pipeline import resolve_mesh

from tests.conftest import asset


def test_spot_keeps_its_uvs_and_is_normalized(spot):
    raw = trimesh.load(asset("spot.obj"), process=False)
    assert meshdream.mesh_info(spot).unwrapped is False
    assert len(spot.faces) == len(raw.faces)
    lo, hi = spot.bounds
    np.testing.assert_allclose(lo + hi, 0, atol=1e-9)
    assert np.isclose((hi - lo).max(), 2.0)
    uv = spot.visual.uv
    assert uv.min() >= 0 and uv.max() <= 1
    # The transform maps the file's coordinates onto the normalized ones.
    to_norm = meshdream.mesh_info(spot).to_normalized
    mapped = trimesh.transform_points(raw.vertices, to_norm)
    assert np.abs(trimesh.PointCloud(mapped).bounds - spot.bounds).max() < 1e-9


def test_mesh_info_comes_from_load_mesh_alone(spot, tmp_path):
    info = meshdream.mesh_info(spot)
    assert meshdream.mesh_info(spot.copy()) is info  # copies of the mesh carry it
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.unwrapped = True
    with pytest.raises(ValueError, match="read-only"):
        info.to_normalized[0, 0] = 1.0
    # A GLB of a loaded mesh holds the info as glTF extras; trimesh reads them back as a plain dict, and the mesh is
    # in the file's frame again: it must not pass for a mesh from load_mesh, and texturing must load it.
    path = tmp_path / "spot.glb"
    meshdream.geometry.to_user_frame(spot).export(path)
    reread = trimesh.load(path, force="mesh")
    assert isinstance(reread.metadata["meshdream"], dict)
    for other in (reread, trimesh.creation.box()):
        with pytest.raises(meshdream.InvalidMeshError, match="pass it through meshdream.load_mesh first"):
            meshdream.mesh_info(other)
    loaded = resolve_mesh(reread, None, Timer())
    assert meshdream.mesh_info(loaded).unwrapped is False
    np.testing.assert_allclose(loaded.bounds, spot.bounds, atol=1e-6)


def test_mesh_without_uvs_gets_a_valid_unwrap():
    path = asset("suzanne.obj")
    mesh = meshdream.load_mesh(path)
    assert meshdream.mesh_info(mesh).unwrapped is True
    uv = mesh.visual.uv
    assert uv.shape == (len(mesh.vertices), 2)
    assert uv.min() >= 0 and uv.max() <= 1
    assert uvs_usable(uv, mesh.faces, max_overlap=0.01)
    # Unwrapping splits vertices but keeps the surface: same area, no face lost beyond the triangulated quads.
    raw = trimesh.load(path, process=False, force="mesh")
    assert np.isclose(mesh.area, raw.area * meshdream.mesh_info(mesh).to_normalized[0, 0] ** 2, rtol=1e-6)


def test_overlapping_uvs_are_replaced():
    box = trimesh.creation.box()
    # Every face mapped onto the same triangle: 100% overlap.
    uv = np.tile([[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], (len(box.faces), 1))
    mirrored = trimesh.Trimesh(
        box.vertices[box.faces].reshape(-1, 3),
        np.arange(len(box.faces) * 3).reshape(-1, 3),
        visual=trimesh.visual.TextureVisuals(uv=uv),
        process=False,
    )
    mesh = meshdream.load_mesh(mirrored)
    assert meshdream.mesh_info(mesh).unwrapped is True
    assert uvs_usable(mesh.visual.uv, mesh.faces)


def test_uvs_slightly_outside_are_fitted_back_not_unwrapped(spot):
    uv = spot.visual.uv * 1.08 - 0.04  # exporter slop: 4% outside on both sides
    sloppy = trimesh.Trimesh(spot.vertices, spot.faces, visual=trimesh.visual.TextureVisuals(uv=uv), process=False)
    mesh = meshdream.load_mesh(sloppy, normalize=False)
    assert meshdream.mesh_info(mesh).unwrapped is False
    fitted = mesh.visual.uv
    assert fitted.min() >= 0 and fitted.max() <= 1 and np.isclose(np.ptp(fitted, axis=0).max(), 1.0)
    # A uniform scale and shift: the layout's shape (and so its texel density ratios) is unchanged.
    scale = np.ptp(fitted, axis=0) / np.ptp(uv, axis=0)
    np.testing.assert_allclose(scale, scale[0], rtol=1e-9)
    np.testing.assert_allclose(fitted - fitted.min(0), (uv - uv.min(0)) * scale[0], atol=1e-9)


def test_input_trimesh_is_not_modified():
    box = trimesh.creation.box(extents=(4, 2, 2))
    before = box.vertices.copy()
    meshdream.load_mesh(box)
    np.testing.assert_array_equal(box.vertices, before)


@pytest.mark.parametrize("suffix", [".glb", ".ply", ".stl", ".obj"])
def test_formats_load(tmp_path, suffix):
    torus = trimesh.creation.torus(1.0, 0.3)
    path = tmp_path / f"torus{suffix}"
    torus.export(path)
    mesh = meshdream.load_mesh(path)
    assert np.isclose(mesh.area, torus.area * (2.0 / torus.extents.max()) ** 2, rtol=1e-4)
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)


def test_missing_file(tmp_path):
    with pytest.raises(meshdream.MeshFileNotFoundError, match="No mesh file"):
        meshdream.load_mesh(tmp_path / "nope.obj")


def test_unsupported_format(tmp_path):
    path = tmp_path / "model.fbx"
    path.write_bytes(b"Kaydara FBX Binary")
    with pytest.raises(meshdream.UnsupportedFormatError, match="convert it"):
        meshdream.load_mesh(path)


def test_point_cloud_has_no_faces(tmp_path):
    path = tmp_path / "points.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((100, 3))).export(path)
    with pytest.raises(meshdream.InvalidMeshError, match="points_to_mesh"):
        meshdream.load_mesh(path)


def test_nan_vertices():
    box = trimesh.creation.box()
    v = box.vertices.copy()
    v[3] = np.nan
    with pytest.raises(meshdream.InvalidMeshError, match="NaN"):
        meshdream.load_mesh(trimesh.Trimesh(v, box.faces, process=False))


def test_degenerate_faces_dropped_with_warning():
    box = trimesh.creation.box()
    faces = np.vstack([box.faces, [[0, 0, 1], [2, 2, 2]]])
    with pytest.warns(meshdream.MeshDreamWarning, match="Dropped 2 zero-area faces"):
        mesh = meshdream.load_mesh(trimesh.Trimesh(box.vertices, faces, process=False))
    assert len(mesh.faces) == 12


def test_only_degenerate_faces():
    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float)
    with pytest.raises(meshdream.InvalidMeshError, match="zero area"):
        meshdream.load_mesh(trimesh.Trimesh(v, [[0, 1, 2]], process=False))


def test_glb_round_trip_keeps_texture_and_user_coordinates(spot, tmp_path):
    rng = np.random.default_rng(1)
    texture = rng.random((64, 64, 3)).astype(np.float32)
    path = meshdream.save_textured(spot, texture, tmp_path / "spot.glb")
    back = trimesh.load(path, force="mesh", process=False)
    image = np.asarray(back.visual.material.baseColorTexture.convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(image, np.round(texture * 255) / 255, atol=1e-6)
    raw = trimesh.load(asset("spot.obj"), process=False)
    np.testing.assert_allclose(back.bounds, raw.bounds, atol=1e-5)
    # UVs survive the glTF v-flip: looking the texture up at the loaded UVs gives the same colours.
    from meshdream.geometry.texture import sample_texture

    order = np.lexsort(back.vertices.T)
    ref = np.lexsort(meshdream.geometry.to_user_frame(spot).vertices.T)
    np.testing.assert_allclose(
        sample_texture(image, back.visual.uv[order]), sample_texture(texture, spot.visual.uv[ref]), atol=2 / 255
    )


def test_obj_writes_mtl_and_png(spot, tmp_path):
    path = meshdream.save_textured(spot, np.full((32, 32, 3), 0.5, np.float32), tmp_path / "cow.obj")
    assert path.exists() and (tmp_path / "cow.mtl").exists() and (tmp_path / "cow.png").exists()
    back = trimesh.load(path, force="mesh")
    assert back.visual.material.image.size == (32, 32)


def test_save_never_overwrites_by_default(spot, tmp_path):
    path = tmp_path / "a.glb"
    path.write_bytes(b"user's file")
    with pytest.raises(meshdream.OutputExistsError, match="overwrite=True"):
        meshdream.save_textured(spot, np.zeros((8, 8, 3)), path)
    assert path.read_bytes() == b"user's file"
    meshdream.save_textured(spot, np.zeros((8, 8, 3)), path, overwrite=True)
    assert path.read_bytes()[:4] == b"glTF"


def test_save_rejects_unknown_suffix(spot, tmp_path):
    with pytest.raises(meshdream.UnsupportedFormatError):
        meshdream.save_textured(spot, np.zeros((8, 8, 3)), tmp_path / "a.fbx")


def test_glb_passes_the_khronos_validator(spot, tmp_path):
    from tests.conftest import khronos_issues

    path = meshdream.save_textured(spot, np.random.default_rng(0).random((64, 64, 3)), tmp_path / "spot.glb")
    issues = khronos_issues(path)
    assert issues["numErrors"] == 0, issues["messages"]
    assert issues["numWarnings"] == 0, issues["messages"]
