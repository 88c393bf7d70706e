"""Flat and open meshes in any orientation: the automatic views see their surface, and every face that faces a
view is textured (issue 15, item 1)."""

import warnings

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.geometry.camera import default_elevations
from meshdream.texturing.views import prepare_views
from scipy import ndimage

TINY = dict(n_views=4, view_resolution=64, texture_size=128, steps=3)
SQUARE = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
AXES = {"xy": [0, 1, 2], "yz": [2, 0, 1], "xz": [0, 2, 1]}  # xz swaps handedness: that plane faces -Y


def _load(vertices, faces) -> trimesh.Trimesh:
    """Through load_mesh (normalized, xatlas unwrap, which wants float32 vertices and uint32 faces)."""
    return meshdream.load_mesh(trimesh.Trimesh(np.float32(vertices), np.uint32(faces), process=False))


def _plane(axes="xy"):
    return _load(SQUARE[:, AXES[axes]], [[0, 1, 2], [0, 2, 3]])


def _two_sided_card():
    """Front and back a hair apart, as a modelled two-sided card (a leaf, a sign) is; open at the rim."""
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return _load(np.vstack([SQUARE, SQUARE - [0, 0, 0.01]]), np.vstack([faces, faces[:, ::-1] + 4]))


def _star(points=5):
    """A flat 2D outline (all z = 0): a star polygon fanned from its centre."""
    angle = np.pi * np.arange(2 * points) / points
    radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, 0.45)
    rim = np.stack([radius * np.sin(angle), radius * np.cos(angle), np.zeros_like(angle)], axis=1)
    k = np.arange(2 * points)
    return _load(np.vstack([[0, 0, 0], rim]), np.stack([np.zeros_like(k), 1 + k, 1 + (k + 1) % (2 * points)], 1))


def _hemisphere(facing):
    """The faces of a sphere on the `facing` side: open (a jagged rim), normals outwards."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    return _load(sphere.vertices, sphere.faces[sphere.triangles_center @ facing > 0])


def _texture(mesh, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", meshdream.MeshDreamWarning)  # no view had to be dropped
        return meshdream.texture_mesh(mesh, "red brick", **{**TINY, **kw})


def _facing_faces(mesh, cameras, min_cos=0.5):
    """Faces whose front some camera sees within 60 degrees of straight on (the meshes here are convex or flat, so
    nothing hides them; faces seen only at grazing angles are a pixel wide in a 64 px view)."""
    to_cam = np.stack([c.position for c in cameras])[None] - mesh.triangles_center[:, None]
    cos = np.einsum("fc,fvc->fv", mesh.face_normals, to_cam / np.linalg.norm(to_cam, axis=-1, keepdims=True))
    return np.flatnonzero((cos > min_cos).any(1))


def _assert_covered(mesh, result, faces):
    """Every texel of those faces got paint from a view, but for the layout's one-texel rim, where the bake's
    bilinear taps may reach past the chart edge."""
    face_map = meshdream.uv_maps(mesh, result.weight.shape[0]).face
    texels = np.isin(face_map, faces) & ndimage.binary_erosion(face_map >= 0)
    assert texels.any() and (result.weight[texels] > 0).all()


@pytest.mark.parametrize("axes", AXES)
def test_planes_in_every_orientation_are_covered(axes):
    plane = _plane(axes)
    r = _texture(plane)
    assert len(r.views) == 4
    _assert_covered(plane, r, np.arange(len(plane.faces)))


@pytest.mark.parametrize("strategy", ["sequential", "project"])
def test_every_strategy_textures_a_flat_card(strategy):
    plane = _plane("xy")
    r = _texture(plane, strategy=strategy)
    _assert_covered(plane, r, np.arange(len(plane.faces)))


def test_single_sided_card_is_seen_only_from_its_front():
    plane = _plane("yz")  # faces +X
    cams = meshdream.orbit_cameras(4, resolution=64, mesh=plane)
    assert all(c.position[0] > 0.5 for c in cams)
    assert np.isclose(cams[0].rotation[2] @ [1, 0, 0], 1)  # the first view looks at it straight on
    r = _texture(plane)
    _assert_covered(plane, r, np.arange(len(plane.faces)))


def test_two_sided_card_gets_views_on_both_sides():
    card = _two_sided_card()
    cams = meshdream.orbit_cameras(4, resolution=64, mesh=card)
    assert sorted(np.sign([c.position[2] for c in cams])) == [-1, -1, 1, 1]
    r = _texture(card)
    _assert_covered(card, r, np.arange(len(card.faces)))


@pytest.mark.parametrize("facing", [(0, 1, 0), (0, 0, 1), (-1, 0, 0)])
def test_open_hemisphere_is_covered_from_outside(facing):
    dome = _hemisphere(facing)
    r = _texture(dome)
    faces = _facing_faces(dome, [c for c, _ in r.views])
    assert len(faces) > 0.8 * len(dome.faces)  # the views face the dome's outside, not into the bowl
    _assert_covered(dome, r, faces)


def test_flat_outline_is_covered():
    star = _star()
    assert np.ptp(star.vertices[:, 2]) == 0
    r = _texture(star, strategy="sequential")
    _assert_covered(star, r, np.arange(len(star.faces)))


def test_closed_meshes_keep_the_default_orbit():
    box = meshdream.load_mesh(trimesh.creation.box((2.0, 1.0, 0.5)))
    for n in (4, 8):
        auto = meshdream.orbit_cameras(n, resolution=64, mesh=box)
        default = meshdream.orbit_cameras(n, resolution=64, mesh=box, elevations=default_elevations(n))
        np.testing.assert_allclose([c.position for c in auto], [c.position for c in default])


def test_automatic_view_that_sees_nothing_is_dropped_with_a_warning():
    plane = _plane("xy")
    cams = meshdream.orbit_cameras(3, resolution=64, mesh=plane) + [meshdream.Camera.look_at((0, 0, -4), (0, 0, -8))]
    with pytest.warns(meshdream.MeshDreamWarning, match="Dropped 1 of 4 views"):
        views = prepare_views(plane, cams, "red brick", require_visible=False)
    assert views.cameras == cams[:3] and len(views.maps) == len(views.prompts) == 3


def test_explicit_camera_looking_away_is_an_error():
    plane = _plane("xy")
    away = meshdream.Camera.look_at((0, 0, 4), (0, 0, 8), resolution=64)
    with pytest.raises(meshdream.CameraError, match="sees none of the mesh"):
        meshdream.texture_mesh(plane, "red brick", cameras=[away], **TINY)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_as_many_views_as_asked_and_each_sees_a_front(n):
    for mesh in (_plane("xz"), _two_sided_card(), _star(), _hemisphere((0, 0, -1))):
        cams = meshdream.orbit_cameras(n, resolution=32, mesh=mesh)
        assert len(cams) == n
        with warnings.catch_warnings():
            warnings.simplefilter("error", meshdream.MeshDreamWarning)
            assert len(prepare_views(mesh, cams, "x", normals=False, require_visible=False).cameras) == n
