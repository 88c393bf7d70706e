"""The views rasterized on the model's device (geometry/raster.py) are the ray cast's views."""

import importlib

import meshdream
import numpy as np
import pytest
import torch
import trimesh
from meshdream import Camera
from meshdream.geometry import orbit_cameras, raster, render, render_views
from meshdream.geometry.meshdata import mesh_data

from tests.device_double import other_device

render_module = importlib.import_module("meshdream.geometry.render")  # the package exports a function of that name


def _cameras(mesh):
    off_centre = Camera.look_at((0.7, 0.4, 2.2), target=(0.3, -0.2, 0.0), fov=55, resolution=(96, 64))
    return orbit_cameras(4, 96, mesh=mesh) + [off_centre]


def _assert_same_view(drawn, cast):
    face, bary, depth = (t.numpy() for t in drawn)
    assert (face == cast.face).mean() > 0.999
    both = (face == cast.face) & (face >= 0)
    assert both.sum() > 500
    np.testing.assert_allclose(depth[both], cast.depth[both], rtol=1e-4)
    np.testing.assert_allclose(bary[both], cast.bary[both], atol=5e-3)
    assert np.isnan(depth[face < 0]).all()


@pytest.mark.parametrize("name", ["spot", "suzanne"])
def test_rasterized_views_match_the_ray_cast(spot, name):
    mesh = spot if name == "spot" else meshdream.load_mesh(meshdream.__path__[0] + "/assets/suzanne.obj")
    triangles = torch.from_numpy(mesh_data(mesh).corner_positions)
    for camera in _cameras(mesh):
        _assert_same_view(raster.rasterize(triangles, camera), render(mesh, camera, require_visible=False))


def test_chunked_passes_give_one_pass_result(spot, monkeypatch):
    triangles = torch.from_numpy(mesh_data(spot).corner_positions)
    camera = orbit_cameras(1, 128, mesh=spot)[0]
    whole = raster.rasterize(triangles, camera)
    monkeypatch.setattr(raster, "PAIRS_PER_CHUNK", 5000)  # dozens of passes
    for a, b in zip(whole, raster.rasterize(triangles, camera)):
        assert torch.equal(a.nan_to_num(), b.nan_to_num())


def test_a_camera_inside_the_mesh_is_ray_cast(monkeypatch):
    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    inside = Camera.look_at((0.0, 0.0, 0.5), target=(0.0, 0.0, -1.0), resolution=48)
    assert raster.rasterize(torch.from_numpy(mesh_data(box).corner_positions), inside) is None
    monkeypatch.setattr(render_module, "RASTER_DEVICES", ("cpu",))
    drawn = render_views(box, [inside], device="cpu")[0]
    cast = render(box, inside)
    assert drawn.mask.all() and np.array_equal(drawn.face, cast.face)


def test_nothing_in_view_is_an_empty_raster_and_a_camera_error(spot, monkeypatch):
    away = Camera.look_at((0.0, 0.0, 5.0), target=(0.0, 0.0, 10.0), resolution=32)
    face, _, depth = raster.rasterize(torch.from_numpy(mesh_data(spot).corner_positions), away)
    assert (face == -1).all() and torch.isnan(depth).all()
    monkeypatch.setattr(render_module, "RASTER_DEVICES", ("cpu",))
    with pytest.raises(meshdream.CameraError, match="sees none of the mesh"):
        render_views(spot, [away], device="cpu")


def test_texturing_rasterizes_its_views_on_the_generators_device(spot, monkeypatch):
    """On the stand-in accelerator every view of a sync job is rasterized there (no host/device mix), and the
    texture is the one the ray-cast views give."""
    job = dict(n_views=2, view_resolution=32, texture_size=64, steps=2)
    fp32 = dict(dtype=torch.float32)  # the same arithmetic on both sides (the CPU's default is bfloat16)
    on_cpu = meshdream.texture_mesh(spot, "red brick", meshdream.load_generator("builtin", **fp32), **job).texture
    calls = []
    monkeypatch.setattr(render_module, "RASTER_DEVICES", ("meta",))
    monkeypatch.setattr(render_module, "rasterize", lambda *a: calls.append(a[0].device) or raster.rasterize(*a))
    gen = meshdream.load_generator("builtin", **fp32)
    with other_device() as dev:
        gen.to(dev)
        on_dev = meshdream.texture_mesh(spot, "red brick", gen, **job).texture
    assert calls and all(d == dev for d in calls)  # the 2 views and their latent-size copies
    assert np.abs(on_dev - on_cpu).mean() < 2e-3
