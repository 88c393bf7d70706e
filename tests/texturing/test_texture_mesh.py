import meshdream
import numpy as np
import pytest
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
    r = meshdream.texture_mesh(
        spot,
        "wood",
        sd15,
        strategy="project",
        cameras=[cam],
        init_image=viewport,
        strength=0.5,
        texture_size=128,
        steps=4,
    )
    maps = meshdream.uv_maps(spot, 128)
    painted = r.weight > 0
    to_cam = cam.position - maps.position[painted]
    assert (np.einsum("nc,nc->n", maps.normal[painted], to_cam) > 0).mean() > 0.99  # faces the camera
    assert 0.2 < painted[maps.coverage].mean() < 0.6  # the far side stays unpainted
    with pytest.raises(meshdream.InvalidParameterError, match="viewport image"):
        meshdream.texture_mesh(
            spot,
            "wood",
            sd15,
            strategy="project",
            cameras=[cam],
            init_image=np.zeros((32, 32, 3)),
            texture_size=128,
            steps=2,
        )


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


def _cli(*args, **kw):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "meshdream.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_cli_texture_writes_a_glb_and_refuses_to_overwrite(tiny, tmp_path):
    from tests.conftest import asset

    out = tmp_path / "cow.glb"
    args = [
        "texture",
        asset("spot.obj"),
        "--prompt",
        "red brick",
        "-o",
        out,
        "--model",
        tiny("sd15_controlnet"),
        "--views",
        "2",
        "--view-resolution",
        "64",
        "--texture-size",
        "64",
        "--steps",
        "2",
    ]
    proc = _cli(*args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    import trimesh

    back = trimesh.load(out, force="mesh")
    assert back.visual.material.baseColorTexture.size == (64, 64)
    proc = _cli(*args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "--overwrite" in err and "Traceback" not in err


def test_cli_ctrl_c_stops_cleanly_and_writes_nothing(tiny, tmp_path):
    import signal
    import time

    from tests.conftest import asset

    out = tmp_path / "never.glb"
    proc = _cli(
        "texture",
        asset("spot.obj"),
        "--prompt",
        "wood",
        "-o",
        out,
        "--model",
        tiny("sd15_controlnet"),
        "--views",
        "8",
        "--view-resolution",
        "256",
        "--texture-size",
        "256",
        "--steps",
        "200",
    )
    # Wait for the denoising bar, then press Ctrl-C once.
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline and "denoise" not in seen:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + err
    assert "nothing was written" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_models_and_inpaint(spot, tmp_path):
    from PIL import Image

    from tests.conftest import asset

    proc = _cli("models")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.startswith("builtin")
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[20:40, 20:40, 3] = 0  # transparent: to fill
    Image.fromarray(rgba).save(tmp_path / "tex.png")
    proc = _cli("inpaint", asset("spot.obj"), tmp_path / "tex.png", "-o", tmp_path / "filled.png")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    filled = np.asarray(Image.open(tmp_path / "filled.png"))
    covered = meshdream.uv_maps(spot, 64).coverage
    assert np.abs(filled[20:40, 20:40][covered[20:40, 20:40]].astype(int) - 200).max() <= 1


def test_refine_pass_doubles_the_view_resolution_over_tiles(spot, sd15):
    r = meshdream.texture_mesh(
        spot, "red brick", sd15, n_views=2, view_resolution=64, texture_size=128, steps=2, refine_scale=2
    )
    assert r.texture.shape == (128, 128, 3)
    assert all(img.shape == (128, 128, 3) for _, img in r.views)  # 2x views, made of 64 px (native) tiles
    assert r.strategy == "sync+refine"
    with pytest.raises(meshdream.InvalidParameterError, match="refine_scale"):
        meshdream.texture_mesh(spot, "wood", sd15, refine_scale=3, **SMALL)


def _wrap_ratio(img):
    """Colour jump across the wrap-around edges relative to the mean jump between neighbouring pixels."""
    inner = (np.abs(np.diff(img, axis=1)).mean() + np.abs(np.diff(img, axis=0)).mean()) / 2
    wrap = (np.abs(img[:, 0] - img[:, -1]).mean() + np.abs(img[0] - img[-1]).mean()) / 2
    return wrap / inner


def test_seamless_texture_wraps_around(sd15):
    from meshdream.texturing.tiling import circular_padding

    tile = meshdream.seamless_texture("marble", sd15, size=64, steps=3)
    assert tile.shape == (64, 64, 3)
    # The same generation without circular padding has a clearly larger jump at the wrap-around edges.
    import torch
    from meshdream.generators import GenerationRequest, sample

    plain = (
        sample(
            sd15,
            GenerationRequest(
                prompts=["marble, seamless tileable texture, flat, top-down"],
                depth=torch.full((1, 1, 64, 64), 0.5),
                steps=3,
            ),
        )[0]
        .permute(1, 2, 0)
        .numpy()
    )
    assert _wrap_ratio(tile) < 1.5
    assert _wrap_ratio(tile) < _wrap_ratio(plain)
    # Padding modes are restored afterwards.
    assert all(c.padding_mode == "zeros" for c in sd15.parts.unet.modules() if isinstance(c, torch.nn.Conv2d))
    with circular_padding(sd15.modules()):
        assert any(c.padding_mode == "circular" for c in sd15.parts.unet.modules() if isinstance(c, torch.nn.Conv2d))


def test_cli_shape_writes_a_closed_mesh(tmp_path):
    import trimesh
    from meshdream.shapes import is_closed

    proc = _cli("shape", "mug", "-o", tmp_path / "mug.glb", "--steps", "10")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert is_closed(trimesh.load(tmp_path / "mug.glb", force="mesh"))
    proc = _cli("shape", "dragon", "-o", tmp_path / "x.glb")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "chair" in err and "Traceback" not in err


def test_sequential_batches_views_that_see_different_sides(spot):
    from meshdream.texturing.sequential import waves

    cams = meshdream.orbit_cameras(8, resolution=64, mesh=spot)
    op = meshdream.bake_operator(spot, cams, 128)
    groups = waves(op, max_batch=16)
    assert sorted(k for g in groups for k in g) == list(range(8)) and groups[0][0] == 0
    assert len(groups) < 8  # opposite views (front and back, top and bottom) share a batch
    for g in groups:
        axes = [cams[k].rotation[2] for k in g]  # unit vectors from the mesh towards each camera
        assert all(a @ b < -0.5 for i, a in enumerate(axes) for b in axes[i + 1 :])  # > 120 degrees apart
    assert waves(op, max_batch=1) == [[k] for k in range(8)]  # memory presets still bound the batch
