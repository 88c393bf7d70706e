"""upscale_texture: exact size, chart layout kept, no bleeding, no visible tile borders, input untouched, clear
errors, for the built-in model (the default) and Lanczos; the built-in model beats bicubic on held-out procedural
textures; ESRGAN-family model files through spandrel and a diffusers x4 upscaler (tiny random-weight models)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types

import meshdream
import numpy as np
import pytest
import torch
import trimesh
from meshdream import GeneratorKindError, InvalidParameterError
from meshdream.generators.builtin.materials import material
from meshdream.generators.builtin.upscaler import load_builtin_upscaler
from meshdream.geometry import dilate
from meshdream.texturing.upscale import empty_gutter
from PIL import Image
from scipy import ndimage

from tests.conftest import asset, psnr

SIZE = 128
UPSCALERS = ("builtin", "lanczos")
GAIN_DB = {2: 0.8, 4: 0.4}  # mean PSNR gain over bicubic to reach (shipped model: 1.6, 0.9; Lanczos: 0.06, -0.06)


@pytest.fixture(scope="module")
def texture(spot):
    """Smooth colour from the surface position on covered texels, black gutter (so padding has to work)."""
    maps = meshdream.uv_maps(spot, SIZE)
    tex = np.zeros((SIZE, SIZE, 3), np.float32)
    cov = maps.coverage
    tex[cov] = 0.5 + 0.4 * np.sin(4.0 * maps.position[cov] + np.array([0.0, 1.0, 2.0], np.float32))
    return tex


@pytest.mark.parametrize("upscaler", UPSCALERS)
def test_size_and_chart_layout_kept(spot, texture, upscaler):
    out = meshdream.upscale_texture(spot, texture, scale=2, upscaler=upscaler)
    assert out.shape == (2 * SIZE, 2 * SIZE, 3) and out.dtype == np.float32
    back = out.reshape(SIZE, 2, SIZE, 2, 3).mean(axis=(1, 3))
    cov = meshdream.uv_maps(spot, SIZE).coverage
    err = np.abs(back - texture)[cov]
    assert err.mean() < 0.01 and np.quantile(err, 0.99) < 0.05
    # The gutter is edge-padded at the new size: no black left between charts.
    assert out.reshape(-1, 3).max(axis=1).min() > 0.05


@pytest.mark.parametrize("upscaler", UPSCALERS)
def test_no_bleed_from_gutter_or_other_charts(spot, upscaler):
    """Each chart a flat colour, black gutter: upscaled charts keep their own colour (a plain resize of the whole
    image mixes black or a neighbour into ~16% of covered texels on spot; chart-aware, only where charts touch)."""
    maps, big = meshdream.uv_maps(spot, SIZE), meshdream.uv_maps(spot, 2 * SIZE)
    colours = np.random.default_rng(1).random((maps.chart.max() + 1, 3)).astype(np.float32)
    flat = np.zeros((SIZE, SIZE, 3), np.float32)
    flat[maps.coverage] = colours[maps.chart[maps.coverage]]
    out = meshdream.upscale_texture(spot, flat, scale=2, upscaler=upscaler)
    cov = big.coverage
    err = np.abs(out[cov] - colours[big.chart[cov]]).max(axis=1)
    assert np.median(err) < 1e-3 and (err > 0.05).mean() < 0.01


def test_own_gutter_kept_on_fragmented_uvs(astronaut):
    """A photo baked at 256² on spot re-unwrapped by xatlas (77 small charts), gutter padded from the nearest chart
    texel, downsampled to 128²: the rim texels whose centre falls just outside a chart still hold part of it, so
    upscale_texture must not re-pad them; then the built-in model beats a bicubic resize near chart borders as well
    (re-padding them made it lose there by ~0.7 dB)."""
    mesh = meshdream.load_mesh(asset("spot.obj"), unwrap="always")
    hi = meshdream.uv_maps(mesh, 2 * SIZE)
    hr = astronaut.reshape(2 * SIZE, 4, 2 * SIZE, 4, 3).mean((1, 3))
    texels, source, _ = hi.gutter
    baked = hr.reshape(-1, 3).copy()
    baked[texels] = baked[source]
    lr = baked.reshape(SIZE, 2, SIZE, 2, 3).mean((1, 3))
    # Within 4 texels of another chart or the gutter.
    near = hi.coverage & (ndimage.maximum_filter(hi.chart, 9) != ndimage.minimum_filter(hi.chart, 9))
    assert near.sum() > 0.1 * hi.coverage.sum()
    ours, bicubic = meshdream.upscale_texture(mesh, lr), np.clip(_pil_bicubic(lr, 2), 0, 1)
    for where in (near, hi.coverage):
        assert psnr(ours[where], hr[where]) > psnr(bicubic[where], hr[where]) + 0.5


@pytest.mark.parametrize("upscaler", UPSCALERS)
def test_empty_gutter_beyond_a_padded_band_is_padded(spot, upscaler):
    """Flat charts padded 2 texels, the rest of the gutter black (as a bake with a small margin leaves it): the black
    is found as the empty fill and padded, the band kept; no black reaches a chart or the new gutter."""
    maps = meshdream.uv_maps(spot, SIZE)
    colours = np.random.default_rng(2).random((maps.chart.max() + 1, 3)).astype(np.float32) * 0.8 + 0.2
    flat = np.zeros((SIZE, SIZE, 3), np.float32)
    flat[maps.coverage] = colours[maps.chart[maps.coverage]]
    flat = dilate(flat, maps.coverage, radius=2)
    empty = empty_gutter(flat, maps.coverage)
    assert empty.any() and not (empty & (flat.max(-1) > 0)).any() and not (empty & maps.coverage).any()
    out = meshdream.upscale_texture(spot, flat, scale=2, upscaler=upscaler)
    big = meshdream.uv_maps(spot, 2 * SIZE)
    err = np.abs(out[big.coverage] - colours[big.chart[big.coverage]]).max(axis=1)
    assert np.median(err) < 1e-3 and (err > 0.05).mean() < 0.01
    assert out.reshape(-1, 3).max(axis=1).min() > 0.15


@pytest.mark.parametrize("upscaler", UPSCALERS)
def test_scale_four(spot, texture, upscaler):
    out = meshdream.upscale_texture(spot, texture, scale=4, upscaler=upscaler, tile=64, overlap=8)
    assert out.shape == (4 * SIZE, 4 * SIZE, 3)
    back = out.reshape(SIZE, 4, SIZE, 4, 3).mean(axis=(1, 3))
    assert np.abs(back - texture)[meshdream.uv_maps(spot, SIZE).coverage].mean() < 0.01
    # A tile and overlap larger than the texture: one tile.
    assert meshdream.upscale_texture(spot, texture[::4, ::4], tile=256, overlap=100).shape == (64, 64, 3)


def _border_ratio(out: np.ndarray, cov: np.ndarray, borders: list[int]) -> float:
    """Mean squared colour step across the given row borders over that across every other row (covered pairs)."""
    both = cov[1:] & cov[:-1]  # row i against row i + 1, both on a chart
    energy = np.where(both, (np.diff(out, axis=0) ** 2).sum(-1), 0.0).sum(1) / np.maximum(both.sum(1), 1)
    at = np.zeros(len(energy), bool)
    at[[b - 1 for b in borders]] = True
    rows = both.any(1)
    return float(energy[at & rows].mean() / energy[~at & rows].mean())


@pytest.mark.parametrize("upscaler", UPSCALERS)
def test_no_tile_border_discontinuity(spot, texture, upscaler):
    tile, overlap, s = 32, 8, 2
    cov = meshdream.uv_maps(spot, SIZE * s).coverage

    def ratios(ov: int) -> tuple[float, float]:
        out = meshdream.upscale_texture(spot, texture, scale=s, upscaler=upscaler, tile=tile, overlap=ov)
        starts = list(range(0, SIZE - tile, tile - ov)) + [SIZE - tile]
        assert len(starts) > 3
        borders = sorted({b * s for st in starts for b in (st, st + tile)} - {0, SIZE * s})
        rows = _border_ratio(out, cov, borders)
        cols = _border_ratio(out.transpose(1, 0, 2), cov.T, borders)
        return rows, cols

    assert max(ratios(overlap)) < 1.5
    assert min(ratios(0)) > 1.5  # the measure does see hard tile borders: without overlap they show

    blended = meshdream.upscale_texture(spot, texture, scale=s, upscaler=upscaler, tile=tile, overlap=overlap)
    whole = meshdream.upscale_texture(spot, texture, scale=s, upscaler=upscaler, tile=SIZE)  # one tile: no borders
    assert np.abs(blended - whole)[cov].max() < 0.02


def test_input_not_modified(spot, texture):
    before = texture.copy()
    as_uint8 = (texture * 255).astype(np.uint8)
    u8_before = as_uint8.copy()
    meshdream.upscale_texture(spot, texture, tile=64, overlap=8)
    meshdream.upscale_texture(spot, as_uint8)
    assert np.array_equal(texture, before) and np.array_equal(as_uint8, u8_before)


def test_progress_and_cancel(spot, texture):
    seen = []
    meshdream.upscale_texture(spot, texture, tile=64, overlap=8, progress=seen.append)
    assert [p.step for p in seen] == list(range(10)) and {p.stage for p in seen} == {"upscale"}  # 3 x 3 tiles
    token = meshdream.CancelToken()
    with pytest.raises(meshdream.CancelledError):
        meshdream.upscale_texture(spot, texture, tile=64, overlap=8, progress=lambda p: token.cancel(), cancel=token)


def test_wrong_inputs(spot, texture):
    with pytest.raises(InvalidParameterError, match="scale=2 or scale=4"):
        meshdream.upscale_texture(spot, texture, scale=3)
    with pytest.raises(InvalidParameterError, match="square"):
        meshdream.upscale_texture(spot, texture[:, :64])
    with pytest.raises(InvalidParameterError, match="power of two"):
        meshdream.upscale_texture(spot, np.zeros((96, 96, 3), np.float32))
    with pytest.raises(InvalidParameterError, match="Unknown upscaler"):
        meshdream.upscale_texture(spot, texture, upscaler="bicubic")
    with pytest.raises(meshdream.ModelNotFoundError, match="does not exist"):
        meshdream.upscale_texture(spot, texture, upscaler="/nowhere/model.pth")


def test_builtin_is_the_default(spot, texture):
    assert inspect.signature(meshdream.upscale_texture).parameters["upscaler"].default == "builtin"
    seen = []
    meshdream.upscale_texture(spot, texture[::2, ::2], progress=seen.append)
    assert {p.message for p in seen} == {"builtin"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a[4:-4, 4:-4] - b[4:-4, 4:-4]) ** 2)))


def _pil_bicubic(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return np.stack(
        [np.asarray(Image.fromarray(img[..., c]).resize((w * s, h * s), Image.BICUBIC)) for c in range(3)], -1
    )


@pytest.mark.parametrize("scale", [2, 4])
def test_builtin_beats_bicubic_on_held_out_textures(scale):
    """Seeds far from the training streams (which seed with lists, never a bare integer); anti-aliased high-res
    made at twice the size, as in training; low-res by plain area downsampling."""
    gains = []
    for k, family in enumerate(("brick", "wood", "marble", "stripes")):
        hr = material(family, "red", 2 * SIZE, np.random.default_rng(90_000 + k)).reshape(SIZE, 2, SIZE, 2, 3)
        hr = hr.mean((1, 3))
        lr = hr.reshape(SIZE // scale, scale, SIZE // scale, scale, 3).mean((1, 3))
        ours = load_builtin_upscaler(scale, "cpu")(lr)
        assert ours.shape == hr.shape and ours.dtype == np.float32
        gains.append(_psnr(ours, hr) - _psnr(_pil_bicubic(lr, scale), hr))
    # Smooth marble or wood has little to add to (~0 dB); edges gain 1-3 dB. No texture may come out worse.
    assert np.mean(gains) > GAIN_DB[scale] and min(gains) > -0.1, gains


def test_builtin_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="no x3 head"):
        load_builtin_upscaler(3, "cpu")
    with pytest.raises(meshdream.ModelNotFoundError, match="train_upscale_model.py"):
        load_builtin_upscaler(2, "cpu", weights=tmp_path / "missing.safetensors")


@pytest.fixture(scope="module")
def spandrel():
    """spandrel imports torchvision at import time for two architectures we never use (LaMa, RestoreFormer). This
    venv's CPU-only torch has no matching torchvision wheel, so a placeholder stands in while spandrel imports."""
    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed (pip install 'meshdream[upscale]')")
    if importlib.util.find_spec("torchvision") is not None:
        import spandrel

        return spandrel
    names = ["torchvision", "torchvision.transforms", "torchvision.transforms.functional"]
    stubs = {n: types.ModuleType(n) for n in names}
    fn = stubs["torchvision.transforms.functional"]
    fn.InterpolationMode = type("InterpolationMode", (), {})
    fn.rotate = fn.normalize = lambda *a, **k: None
    sys.modules.update(stubs)
    try:
        import spandrel
    finally:
        for n in names:
            sys.modules.pop(n, None)  # transformers looks torchvision up later and must not find a placeholder
    return spandrel


def _compact(spandrel, tmp_path, upscale: int, name: str):
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=upscale)
    path = tmp_path / name
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(path))
    else:
        torch.save(net.state_dict(), path)
    return path


def test_spandrel_model(spot, texture, spandrel, tmp_path):
    path = _compact(spandrel, tmp_path, 2, "tiny_x2.pth")
    out = meshdream.upscale_texture(spot, texture, scale=2, upscaler=path, tile=64, overlap=8)
    assert out.shape == (2 * SIZE, 2 * SIZE, 3) and np.isfinite(out).all()
    assert 0.0 <= out.min() and out.max() <= 1.0

    x4 = _compact(spandrel, tmp_path, 4, "tiny_x4.safetensors")
    assert meshdream.upscale_texture(spot, texture, scale=4, upscaler=str(x4), tile=64).shape == (512, 512, 3)
    with pytest.raises(GeneratorKindError, match=r"upscales x4, but scale=2"):
        meshdream.upscale_texture(spot, texture, scale=2, upscaler=x4)


def test_spandrel_not_sr_model(spot, texture, spandrel, tmp_path):
    path = _compact(spandrel, tmp_path, 1, "denoise.pth")
    with pytest.raises(GeneratorKindError, match="Restoration model, not a super-resolution"):
        meshdream.upscale_texture(spot, texture, upscaler=path)


def test_diffusers_upscaler(spot, texture, tiny, tmp_path):
    from tests.tiny_models import build_upscaler

    folder = build_upscaler(tmp_path / "x4")
    small = texture[::4, ::4]  # 32², four overlapping 24² tiles: a random tiny model still costs ~1 s a tile
    out = meshdream.upscale_texture(spot, small, scale=4, upscaler=folder, tile=24, overlap=8, steps=2)
    assert out.shape == (128, 128, 3) and np.isfinite(out).all()
    with pytest.raises(GeneratorKindError, match=r"upscales x4, but scale=2"):
        meshdream.upscale_texture(spot, small, scale=2, upscaler=str(folder))
    with pytest.raises(GeneratorKindError, match="StableDiffusionPipeline, not a StableDiffusionUpscalePipeline"):
        meshdream.upscale_texture(spot, small, scale=4, upscaler=tiny("sd15_plain"))


def test_a_mesh_without_uvs_is_refused_with_what_to_pass():
    box = trimesh.creation.box()
    with pytest.raises(meshdream.InvalidMeshError, match="no UV map, so its texture has no place on it"):
        meshdream.upscale_texture(box, np.zeros((64, 64, 3), np.float32), upscaler="lanczos")
