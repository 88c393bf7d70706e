import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import Camera
from meshdream.geometry import raycast


def test_unit_sphere_depth_matches_the_analytic_value():
    sphere = trimesh.creation.icosphere(subdivisions=6)  # radius 1, max chord error ~1e-4
    cam = Camera.look_at((0.0, 0.0, 4.0), fov=40, resolution=128)
    maps = meshdream.render(sphere, cam)
    dirs = cam.pixel_directions() @ cam.rotation  # unit depth, world space
    o = cam.position
    # |o + t d|^2 = 1  ->  t = (-b - sqrt(b^2 - a c)) / a with a = d.d, b = o.d, c = o.o - 1
    a, b, c = (dirs**2).sum(1), dirs @ o, o @ o - 1
    disc = b**2 - a * c
    hit = disc > 0
    expected = np.full(len(dirs), np.nan)
    expected[hit] = (-b[hit] - np.sqrt(disc[hit])) / a[hit]
    expected = expected.reshape(128, 128)
    # Pixels grazing the silhouette may fall either side of the tessellated outline.
    inner = np.zeros_like(hit)
    inner[disc > 0.02 * a] = True
    inner = inner.reshape(128, 128)
    assert maps.mask[inner].all() and not maps.mask[~hit.reshape(128, 128)].any()
    np.testing.assert_allclose(maps.depth[inner], expected[inner], rtol=2e-4)
    assert np.isnan(maps.depth[~maps.mask]).all() and (maps.face[~maps.mask] == -1).all()
    # Smooth normals of a sphere point away from its centre.
    points = o + dirs.reshape(128, 128, 3)[inner] * maps.depth[inner][:, None]
    np.testing.assert_allclose(maps.normal[inner], points / np.linalg.norm(points, axis=1, keepdims=True), atol=2e-3)


def test_uv_and_texture_render(spot):
    cam = meshdream.orbit_cameras(1, resolution=64, mesh=spot)[0]
    maps = meshdream.render(spot, cam)
    uv = maps.uv[maps.mask]
    assert np.isfinite(uv).all() and uv.min() >= 0 and uv.max() <= 1
    assert np.isnan(maps.uv[~maps.mask]).all()
    # A texture whose colour encodes its own UV coordinates renders the UV map back.
    s = 256
    j, i = np.meshgrid(np.arange(s), np.arange(s))
    texture = np.stack([(j + 0.5) / s, 1 - (i + 0.5) / s, np.zeros((s, s))], -1).astype(np.float32)
    image = meshdream.render_texture(spot, texture, cam, background=1.0, maps=maps)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[maps.mask][:, :2], np.clip(uv, 0.5 / s, 1 - 0.5 / s), atol=1e-5)
    assert (image[~maps.mask] == 1.0).all()


def test_camera_that_sees_nothing(spot):
    away = Camera.look_at((0, 0, 5), (0, 0, 10))
    with pytest.raises(meshdream.CameraError, match="sees none of the mesh"):
        meshdream.render(spot, away)


def test_chunked_casting_equals_one_pass(spot, monkeypatch):
    cam = meshdream.orbit_cameras(1, resolution=200, mesh=spot)[0]
    whole = meshdream.render(spot, cam)
    monkeypatch.setattr(raycast, "CHUNK", 997)  # many uneven chunks
    from meshdream.geometry.meshdata import mesh_data

    chunked = mesh_data(spot).caster.cast(cam.position, cam.pixel_directions() @ cam.rotation)
    np.testing.assert_array_equal(chunked.face.reshape(200, 200), whole.face)


def test_editing_a_mesh_invalidates_cached_geometry():
    box = trimesh.creation.box()
    cam = Camera.look_at((0, 0, 5), resolution=32)
    before = meshdream.render(box, cam).depth.copy()
    box.vertices[:, 2] += 1.0  # in place: trimesh's content hash changes
    after = meshdream.render(box, cam).depth
    assert np.isclose(before[16, 16], 4.5) and np.isclose(after[16, 16], 3.5)
    assert np.isfinite(after).sum() > np.isfinite(before).sum()  # nearer, so larger in the image
