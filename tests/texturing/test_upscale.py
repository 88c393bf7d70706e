"""upscale_texture: exact size, chart layout kept, no bleeding, no visible tile borders, input untouched, clear
errors; ESRGAN-family model files through spandrel and a diffusers x4 upscaler (tiny random-weight models)."""

from __future__ import annotations

import importlib.util
import sys
import types

import meshdream
import numpy as np
import pytest
import torch
from meshdream import GeneratorKindError, InvalidParameterError

SIZE = 128


@pytest.fixture(scope="module")
def texture(spot):
    """Smooth colour from the surface position on covered texels, black gutter (so padding has to work)."""
    maps = meshdream.uv_maps(spot, SIZE)
    tex = np.zeros((SIZE, SIZE, 3), np.float32)
    cov = maps.coverage
    tex[cov] = 0.5 + 0.4 * np.sin(4.0 * maps.position[cov] + np.array([0.0, 1.0, 2.0], np.float32))
    return tex


def test_size_and_chart_layout_kept(spot, texture):
    out = meshdream.upscale_texture(spot, texture, scale=2)
    assert out.shape == (2 * SIZE, 2 * SIZE, 3) and out.dtype == np.float32
    back = out.reshape(SIZE, 2, SIZE, 2, 3).mean(axis=(1, 3))
    cov = meshdream.uv_maps(spot, SIZE).coverage
    err = np.abs(back - texture)[cov]
    assert err.mean() < 0.01 and np.quantile(err, 0.99) < 0.05
    # The gutter is edge-padded at the new size: no black left between charts.
    assert out.reshape(-1, 3).max(axis=1).min() > 0.05


def test_no_bleed_from_gutter_or_other_charts(spot):
    """Each chart a flat colour, black gutter: upscaled charts keep their own colour (a plain resize of the whole
    image mixes black or a neighbour into ~16% of covered texels on spot; chart-aware, only where charts touch)."""
    maps, big = meshdream.uv_maps(spot, SIZE), meshdream.uv_maps(spot, 2 * SIZE)
    colours = np.random.default_rng(1).random((maps.chart.max() + 1, 3)).astype(np.float32)
    flat = np.zeros((SIZE, SIZE, 3), np.float32)
    flat[maps.coverage] = colours[maps.chart[maps.coverage]]
    out = meshdream.upscale_texture(spot, flat, scale=2)
    cov = big.coverage
    err = np.abs(out[cov] - colours[big.chart[cov]]).max(axis=1)
    assert np.median(err) < 1e-3 and (err > 0.05).mean() < 0.01


def test_scale_four(spot, texture):
    assert meshdream.upscale_texture(spot, texture, scale=4, tile=64, overlap=8).shape == (4 * SIZE, 4 * SIZE, 3)
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


def test_no_tile_border_discontinuity(spot, texture):
    tile, overlap, s = 32, 8, 2
    cov = meshdream.uv_maps(spot, SIZE * s).coverage

    def ratios(ov: int) -> tuple[float, float]:
        out = meshdream.upscale_texture(spot, texture, scale=s, tile=tile, overlap=ov)
        starts = list(range(0, SIZE - tile, tile - ov)) + [SIZE - tile]
        assert len(starts) > 3
        borders = sorted({b * s for st in starts for b in (st, st + tile)} - {0, SIZE * s})
        rows = _border_ratio(out, cov, borders)
        cols = _border_ratio(out.transpose(1, 0, 2), cov.T, borders)
        return rows, cols

    assert max(ratios(overlap)) < 1.5
    assert min(ratios(0)) > 1.5  # the measure does see hard tile borders: without overlap they show

    blended = meshdream.upscale_texture(spot, texture, scale=s, tile=tile, overlap=overlap)
    whole = meshdream.upscale_texture(spot, texture, scale=s, tile=SIZE)  # one tile: no borders at all
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
