import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import Camera


def test_view_matrix_round_trip():
    cam = Camera.look_at((1.0, 2.0, 3.0), (0.0, 0.1, 0.0), fov=50, resolution=(640, 480))
    again = Camera.from_view_matrix(cam.world_to_camera, fov=50, resolution=(640, 480))
    np.testing.assert_allclose(again.world_to_camera, cam.world_to_camera)
    np.testing.assert_allclose(cam.position, [1, 2, 3])
    assert np.isclose(cam.fov, 50)
    xy, depth = cam.project(np.array([[0.0, 0.1, 0.0]]))
    np.testing.assert_allclose(xy[0], [320, 240], atol=1e-9)  # the target is at the image centre
    assert np.isclose(depth[0], np.linalg.norm([1.0, 1.9, 3.0]))


def test_uniform_scale_in_view_matrix_is_removed():
    cam = Camera.look_at((0, 0, 4))
    scaled = cam.world_to_camera.copy()
    scaled[:3] *= 2.5
    np.testing.assert_allclose(Camera.from_view_matrix(scaled).world_to_camera, cam.world_to_camera, atol=1e-12)


def test_bad_view_matrices():
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(meshdream.CameraError, match="shear"):
        Camera.from_view_matrix(shear)
    with pytest.raises(meshdream.CameraError, match="4x4"):
        Camera.from_view_matrix(np.eye(3))
    with pytest.raises(meshdream.CameraError, match="Field of view"):
        Camera.from_view_matrix(np.eye(4), fov=0)
    with pytest.raises(meshdream.CameraError, match="equals its target"):
        Camera.look_at((1, 1, 1), (1, 1, 1))


@pytest.mark.parametrize("n", [1, 4, 8, 12])
def test_orbit_cameras_frame_the_mesh_tightly(spot, n):
    margin = 0.05
    cams = meshdream.orbit_cameras(n, resolution=(320, 256), mesh=spot, margin=margin)
    assert len(cams) == n
    for cam in cams:
        xy, depth = cam.project(spot.vertices)
        assert (depth > 0).all()
        # Inside the frame with the margin kept free ...
        lo, hi = margin / 2 * np.array([320, 256]), (1 - margin / 2) * np.array([320, 256])
        assert (xy >= lo - 1e-6).all() and (xy <= hi + 1e-6).all()
        # ... and touching it on both sides of at least one axis (tight, centred).
        touch = np.isclose(xy.min(0), lo, atol=0.5) & np.isclose(xy.max(0), hi, atol=0.5)
        assert touch.any()


def test_orbit_cameras_view_from_all_sides(spot):
    cams = meshdream.orbit_cameras(8, mesh=spot)
    dirs = np.array([c.rotation[2] for c in cams])  # from the mesh towards each camera
    assert dirs[:, 1].max() > 0.9 and dirs[:, 1].min() < -0.9  # one from the top and one from below
    ring = dirs[:6, [0, 2]]
    angles = np.sort(np.degrees(np.arctan2(ring[:, 0], ring[:, 1])) % 360)
    np.testing.assert_allclose(np.diff(angles), 60, atol=1)


def test_orbit_argument_errors():
    with pytest.raises(meshdream.InvalidParameterError):
        meshdream.orbit_cameras(0)
    with pytest.raises(meshdream.InvalidParameterError):
        meshdream.orbit_cameras(3, elevations=[0, 10])
    with pytest.raises(meshdream.InvalidParameterError):
        meshdream.orbit_cameras(2, resolution=-5)


def test_camera_in_user_coordinates_sees_the_same_image(tmp_path):
    # A DCC tool gives the camera in its own coordinates; transformed() brings it to the normalized mesh.
    user = trimesh.creation.torus(3.0, 1.0)
    user.apply_translation([10.0, -4.0, 2.0])
    mesh = meshdream.load_mesh(user)
    to_norm = meshdream.mesh_info(mesh).to_normalized
    user_cam = Camera.look_at((10.0, -4.0, 20.0), (10.0, -4.0, 2.0), resolution=96)
    in_user = meshdream.render(user, user_cam)
    in_norm = meshdream.render(mesh, user_cam.transformed(to_norm))
    np.testing.assert_array_equal(in_user.mask, in_norm.mask)
    scale = to_norm[0, 0]
    np.testing.assert_allclose(in_norm.depth[in_norm.mask], scale * in_user.depth[in_user.mask], rtol=1e-4)


def test_dict_round_trip():
    cam = meshdream.orbit_cameras(3)[1]
    again = Camera.from_dict(cam.to_dict())
    np.testing.assert_array_equal(again.world_to_camera, cam.world_to_camera)
    assert (again.width, again.fx) == (cam.width, cam.fx)
