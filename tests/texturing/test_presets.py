"""Presets (meshdream.presets): one table the API, CLI, server and add-on read; Quick's preview refined at full size."""

import meshdream
import numpy as np
import pytest
from meshdream.cli import build_parser
from meshdream.errors import InvalidParameterError
from meshdream.jobs import Limits
from meshdream.presets import PRESETS, with_preset
from meshdream.texturing.restyle import resample


@pytest.fixture(scope="module")
def builtin():
    return meshdream.load_generator("builtin")


@pytest.fixture(scope="module")
def preview(spot, builtin):
    return meshdream.texture_mesh(spot, "red brick", builtin, preset="quick")


def test_what_the_caller_sets_wins_over_the_preset():
    assert with_preset("quick", n_views=None, steps=9) == {"n_views": PRESETS["quick"].n_views, "steps": 9}
    assert with_preset(None, n_views=None, texture_size=None) == {"n_views": 8, "texture_size": None}  # "full"
    with pytest.raises(InvalidParameterError, match="'fast' is unknown; use one of quick, full"):
        with_preset("fast", steps=None)


def test_quick_makes_the_presets_views_and_texture(preview):
    quick = PRESETS["quick"]
    assert preview.texture.shape == (quick.texture_size, quick.texture_size, 3)
    assert len(preview.views) == quick.n_views
    assert all(img.shape[:2] == (quick.view_resolution,) * 2 for _, img in preview.views)
    red = preview.texture[preview.weight > 0].mean(0)
    assert red[0] > red[1] + 0.2 and red[0] > red[2] + 0.2  # "red brick" already


def test_refining_a_preview_at_full_continues_from_it(spot, builtin, preview):
    full = meshdream.restyle_texture(spot, preview.texture, "red brick", generator=builtin, preset="full", steps=6)
    size = builtin.default_texture_size
    assert full.texture.shape == (size, size, 3) and len(full.views) == PRESETS["full"].n_views
    seen = full.weight > 0
    start = resample(preview.texture, size)[seen]
    corr = np.corrcoef(start.ravel(), full.texture[seen].ravel())[0, 1]
    assert corr > 0.5, corr  # the preview's layout carries on
    assert np.abs(full.texture[seen].mean(0) - start.mean(0)).max() < 0.1


def test_restyle_keeps_the_textures_size_without_a_preset(spot, builtin):
    texture = np.full((64, 64, 3), 0.5, np.float32)
    r = meshdream.restyle_texture(spot, texture, "red brick", 0.0, generator=builtin, n_views=2, steps=2)
    assert r.texture.shape == (64, 64, 3)


def test_the_command_line_takes_a_preset():
    args = build_parser().parse_args(["texture", "m.obj", "--prompt", "p", "-o", "o.glb", "--preset", "quick"])
    assert args.preset == "quick" and args.views is None
    args = build_parser().parse_args(["restyle", "m.obj", "--texture", "t.png", "--prompt", "p", "-o", "o.glb"])
    assert args.preset is None and args.texture_size is None


def test_a_servers_limits_count_what_a_preset_fills():
    Limits(view_resolution=96, texture_size=256, n_views=4).check({"preset": "quick"})
    with pytest.raises(InvalidParameterError, match=r"settings.texture_size: 256 is out of range"):
        Limits(texture_size=128).check({"preset": "quick"})
    with pytest.raises(InvalidParameterError, match=r"settings.n_views: 8 is out of range"):
        Limits(n_views=4).check({"preset": "full"})
    with pytest.raises(InvalidParameterError, match="Preset 'fast' is unknown"):
        Limits().check({"preset": "fast"})
