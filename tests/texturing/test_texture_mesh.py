import numpy as np
import pytest

import meshdream
from meshdream.texturing.inpaint import seam_band

SMALL = dict(n_views=4, view_resolution=64, texture_size=128, steps=3)


@pytest.fixture(scope="module")
def sd15(tiny):
    return meshdream.load_generator(tiny("sd15_controlnet"))


@pytest.mark.parametrize("strategy", ["sync", "sequential", "project"])
def test_each_strategy_textures_the_mesh(spot, sd15, strategy):
    r = meshdream.texture_mesh(spot, "red brick wall", sd15, strategy=strategy, **SMALL)
    assert r.texture.shape == (128, 128, 3) and r.texture.dtype == np.float32
    assert r.weight.shape == (128, 128) and (r.weight > 0).any()
    assert 0 <= r.texture.min() and r.texture.max() <= 1
    assert len(r.views) == (1 if strategy == "project" else 4)
    assert all(img.shape == (64, 64, 3) for _, img in r.views)
    assert {"model", "geometry", "total"} <= set(r.timings)
    covered = meshdream.uv_maps(spot, 128).coverage
    if strategy == "project":
        # Only what the one view sees is painted; the rest is left for the caller to compose.
        assert (r.weight[covered] == 0).any() and (r.texture[r.weight == 0] == 0).all()
    else:
        # Unseen texels were inpainted: the whole layout has colour.
        assert (r.texture[covered].max(axis=-1) > 0).all()


def test_same_seed_same_texture(spot, sd15):
    a = meshdream.texture_mesh(spot, "blue marble", sd15, seed=7, **SMALL).texture
    b = meshdream.texture_mesh(spot, "blue marble", sd15, seed=7, **SMALL).texture
    c = meshdream.texture_mesh(spot, "blue marble", sd15, seed=8, **SMALL).texture
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize("kind", ["sdxl_controlnet", "sd2_depth"])
def test_sync_runs_with_other_depth_families(spot, tiny, kind):
    gen = meshdream.load_generator(tiny(kind))
    r = meshdream.texture_mesh(spot, "green wood", gen, **SMALL)
    assert r.texture.shape == (128, 128, 3)


def test_progress_every_step_and_cancel(spot, sd15):
    reports = []
    meshdream.texture_mesh(spot, "oak", sd15, progress=reports.append, **SMALL)
    steps = [r.step for r in reports if r.stage == "denoise"]
    assert steps == [0, 1, 2, 3]
    token = meshdream.CancelToken()
    seen = []

    def cancel_first(report):
        seen.append(report)
        if report.stage == "denoise" and report.step == 1:
            token.cancel()

    with pytest.raises(meshdream.CancelledError):
        meshdream.texture_mesh(spot, "oak", sd15, progress=cancel_first, cancel=token, **SMALL)
    assert max(r.step for r in seen if r.stage == "denoise") == 1


def test_wrong_model_kind_and_bad_arguments(spot, tiny, sd15):
    inpaint = meshdream.load_generator(tiny("sd_inpaint"))
    with pytest.raises(meshdream.GeneratorKindError, match="cannot do depth"):
        meshdream.texture_mesh(spot, "wood", inpaint, **SMALL)
    with pytest.raises(meshdream.InvalidParameterError, match="Strategy"):
        meshdream.texture_mesh(spot, "wood", sd15, strategy="magic", **SMALL)
    with pytest.raises(meshdream.InvalidParameterError, match="prompt is empty"):
        meshdream.texture_mesh(spot, "  ", sd15, **SMALL)
    with pytest.raises(meshdream.InvalidParameterError, match="multiple of 8"):
        meshdream.texture_mesh(spot, "wood", sd15, **{**SMALL, "view_resolution": 60})


def test_project_from_a_viewport_camera_with_img2img(spot, sd15):
    cam = meshdream.Camera.look_at((0.0, 0.3, 3.5), resolution=64)
    viewport = np.full((64, 64, 3), 0.5, np.float32)
    r = meshdream.texture_mesh(spot, "wood", sd15, strategy="project", cameras=[cam], init_image=viewport,
                               strength=0.5, texture_size=128, steps=4)
    maps = meshdream.uv_maps(spot, 128)
    painted = r.weight > 0
    to_cam = cam.position - maps.position[painted]
    assert (np.einsum("nc,nc->n", maps.normal[painted], to_cam) > 0).mean() > 0.99  # faces the camera
    assert 0.2 < painted[maps.coverage].mean() < 0.6  # the far side stays unpainted
    with pytest.raises(meshdream.InvalidParameterError, match="viewport image"):
        meshdream.texture_mesh(spot, "wood", sd15, strategy="project", cameras=[cam],
                               init_image=np.zeros((32, 32, 3)), texture_size=128, steps=2)


def _seam_error(texture, seams):
    flat = texture.reshape(-1, 3)
    return float(np.abs(flat[seams[:, 0]] - flat[seams[:, 1]]).mean())


def test_inpaint_uv_fills_holes_and_lowers_seam_error(spot, astronaut):
    size = 256
    maps = meshdream.uv_maps(spot, size)
    rng = np.random.default_rng(0)
    texture = np.asarray(astronaut[::4, ::4], np.float32).copy()
    # Per-chart colour offsets make every seam visible; a hole of unseen texels is cut out.
    texture = np.clip(texture + 0.3 * rng.random((maps.chart.max() + 2, 3))[maps.chart], 0, 1).astype(np.float32)
    hole = np.zeros((size, size), bool)
    hole[100:140, 60:200] = True
    hole &= maps.coverage
    texture[hole] = 0
    before = _seam_error(texture, maps.seams)
    out = meshdream.inpaint_uv(spot, texture, hole)
    assert out.shape == texture.shape
    assert (out[hole].max(axis=-1) > 0).all()  # every hole texel got a colour
    assert _seam_error(out, maps.seams) < 0.5 * before
    untouched = maps.coverage & ~hole & ~seam_band(maps, 2)
    np.testing.assert_array_equal(out[untouched], texture[untouched])
    assert not (out[~maps.coverage] == 0).all()  # gutters padded


def test_inpaint_uv_with_a_diffusion_inpainting_model(spot, tiny):
    gen = meshdream.load_generator(tiny("sd_inpaint"))
    size = 128
    maps = meshdream.uv_maps(spot, size)
    texture = np.full((size, size, 3), 0.5, np.float32)
    hole = np.zeros((size, size), bool)
    hole[40:80, 40:80] = True
    hole &= maps.coverage
    out = meshdream.inpaint_uv(spot, texture, hole, generator=gen, prompt="wood", steps=2)
    assert np.abs(out[hole] - 0.5).mean() > 0.01  # new content from the model, not the harmonic fill
    keep = maps.coverage & ~hole & ~seam_band(maps, 2)
    np.testing.assert_array_equal(out[keep], texture[keep])
    with pytest.raises(meshdream.InvalidParameterError, match="same size"):
        meshdream.inpaint_uv(spot, texture, hole[:64])
