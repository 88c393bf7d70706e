import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.progress import CancelToken

from tests.conftest import psnr


@pytest.fixture(scope="module")
def spot_views(spot, astronaut):
    cams = meshdream.orbit_cameras(8, resolution=512, mesh=spot)
    return [(c, meshdream.render_texture(spot, astronaut, c)) for c in cams]


def test_round_trip_recovers_the_texture(spot, astronaut, spot_views):
    # The round trip: astronaut at 1024², 8 orbit views at 512 px, baked back into 1024².
    result = meshdream.bake(spot, spot_views, 1024)
    assert result.texture.shape == (1024, 1024, 3) and result.texture.dtype == np.float32
    assert result.weight.shape == (1024, 1024) and result.weight.dtype == np.float32
    seen, covered = result.seen, result.coverage
    assert not seen[~covered].any()  # only texels on the layout are baked
    assert seen[covered].mean() >= 0.97
    assert psnr(result.texture[seen], astronaut[seen]) >= 31.0
    assert (result.texture[covered & ~seen] == 0).all()
    assert (result.best_cos[seen] > 0).all() and (result.best_cos[~seen] == 0).all()


def test_best_view_mode_and_power(spot, astronaut, spot_views):
    best = meshdream.bake(spot, spot_views, 1024, mode="best")
    blend = meshdream.bake(spot, spot_views, 1024, power=2.0)
    np.testing.assert_array_equal(best.seen, blend.seen)
    for r in (best, blend):
        assert psnr(r.texture[r.seen], astronaut[r.seen]) >= 29.0


def test_hidden_surfaces_are_not_painted():
    # Two parallel squares, one behind the other, on separate UV halves; one camera sees only the front one.
    front = trimesh.creation.box(extents=(1, 1, 0.1))
    back = front.copy()
    back.apply_translation((0, 0, -1))
    mesh = meshdream.load_mesh(trimesh.util.concatenate([front, back]), normalize=False, unwrap="always")
    cam = meshdream.Camera.look_at((0, 0, 3), (0, 0, 0), fov=30, resolution=128)
    image = np.ones((128, 128, 3), np.float32)
    result = meshdream.bake(mesh, [(cam, image)], 256)
    maps = meshdream.uv_maps(mesh, 256)
    z = maps.position[..., 2]
    seen = result.seen
    assert seen.any()
    assert not seen[z < -0.9].any()  # the back box is fully hidden
    assert np.allclose(z[seen], 0.05, atol=1e-5)  # only the front box's camera-facing side is seen


def test_view_masks_limit_what_a_view_paints(spot, astronaut, spot_views):
    cam, image = spot_views[0]
    left = np.zeros(image.shape[:2], np.float32)
    left[:, : image.shape[1] // 2] = 1
    full = meshdream.bake(spot, [(cam, image)], 256)
    half = meshdream.bake(spot, [(cam, image, left)], 256)
    assert 0.3 < half.seen.sum() / full.seen.sum() < 0.7
    assert not (half.seen & ~full.seen).any()


def test_operator_rebakes_new_images(spot, spot_views):
    cams = [c for c, _ in spot_views]
    op = meshdream.bake_operator(spot, cams, 256)
    flat = [np.full((c.height, c.width, 4), 0.25, np.float32) for c in cams]
    r = op.apply(flat, padding=0)
    np.testing.assert_allclose(r.texture[r.seen], 0.25, atol=1e-6)  # convex combination of view pixels
    assert r.texture.shape == (256, 256, 4)


def test_uv_maps_positions_lie_on_the_surface_and_seams_pair_the_same_point(spot):
    maps = meshdream.uv_maps(spot, 256)
    pos = maps.position[maps.coverage]
    assert np.isnan(maps.position[~maps.coverage]).all() and (maps.chart[~maps.coverage] == -1).all()
    _, dist, _ = trimesh.proximity.closest_point(spot, pos[::50])
    assert dist.max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(maps.normal[maps.coverage], axis=-1), 1, atol=1e-5)
    seams = maps.seams
    assert len(seams) > 100
    flat = maps.position.reshape(-1, 3)
    charts = maps.chart.ravel()
    gap = np.linalg.norm(flat[seams[:, 0]] - flat[seams[:, 1]], axis=1)
    texel = 2.0 * np.sqrt(spot.area / maps.coverage.sum()) / 2  # world size of one texel (about)
    assert np.median(gap) < 2 * texel
    # Most seam pairs join two different charts (some seams run inside one chart).
    assert (charts[seams[:, 0]] != charts[seams[:, 1]]).mean() > 0.5


def test_edge_padding_fills_the_gutter_only(spot, spot_views):
    padded = meshdream.bake(spot, spot_views, 256, padding=3)
    bare = meshdream.bake(spot, spot_views, 256, padding=0)
    gutter = (padded.texture != bare.texture).any(-1)
    assert gutter.any()
    assert not (gutter & padded.coverage).any()
    from scipy import ndimage

    near = ndimage.distance_transform_edt(~bare.seen) <= 3
    assert not (gutter & ~near).any()


def test_bad_arguments(spot, spot_views):
    cam, image = spot_views[0]
    with pytest.raises(meshdream.InvalidParameterError, match="power of two"):
        meshdream.bake(spot, spot_views, 1000)
    with pytest.raises(meshdream.InvalidParameterError, match="power of two"):
        meshdream.bake(spot, spot_views, 0)
    with pytest.raises(meshdream.InvalidParameterError, match="resize"):
        meshdream.bake(spot, [(cam, image[:100])], 256)
    with pytest.raises(meshdream.InvalidParameterError, match="Camera, image"):
        meshdream.bake(spot, [image], 256)
    with pytest.raises(meshdream.InvalidParameterError, match="No views"):
        meshdream.bake(spot, [], 256)
    with pytest.raises(meshdream.InvalidParameterError, match="NaN"):
        meshdream.bake(spot, [(cam, np.full_like(image, np.nan))], 256)
    with pytest.raises(meshdream.InvalidParameterError, match="'blend' or 'best'"):
        meshdream.bake(spot, spot_views, 256, mode="average")


def test_progress_and_cancel(spot, spot_views):
    reports = []
    meshdream.bake(spot, spot_views, 256, progress=reports.append)
    assert [r.step for r in reports] == list(range(len(spot_views) + 1))
    assert all(r.stage == "bake" and r.total == len(spot_views) for r in reports)

    token = CancelToken()

    def cancel_after_two(report):
        if report.step == 2:
            token.cancel()

    with pytest.raises(meshdream.CancelledError):
        meshdream.bake(spot, spot_views, 256, progress=cancel_after_two, cancel=token)
