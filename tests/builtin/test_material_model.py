"""The built-in material model (issue 27): the shipped weights read roughness, metallic and surface detail off
unlit views better than constants do, the prompt's family steers it, and a damaged file is one clear error."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from meshdream.generators.base import ModelNotFoundError
import meshdream
from meshdream.generators.builtin.material_model import TILE, WEIGHTS, family_index, load_builtin_material_model
from meshdream.generators.builtin.materials import height_to_normal, material_maps
from meshdream.geometry import orbit_cameras, render, render_texture, uv_maps


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return load_builtin_material_model("cpu")


def flat_view(family: str, seed: int, size: int = 128):
    """A held-out material seen straight on (seed stream 3: neither training nor the card's held-out set)."""
    m = material_maps(family, "red", size, np.random.default_rng([3, seed]))
    return m, height_to_normal(m["height"])


def test_estimates_on_rendered_views(model, spot):
    m, _ = flat_view("brick", 0, 256)
    cams = orbit_cameras(3, resolution=96, mesh=spot)
    maps = [render(spot, c) for c in cams]
    images = np.stack([render_texture(spot, m["albedo"], c, maps=v) for c, v in zip(cams, maps)])
    masks = np.stack([v.mask for v in maps])
    normals = np.stack([v.normal @ c.rotation.T for v, c in zip(maps, cams)]).astype(np.float32)
    out = model.estimate(images, masks, normals, "red brick")
    assert out.roughness.shape == out.metallic.shape == (3, 96, 96) and out.normal.shape == (3, 96, 96, 3)
    assert out.albedo is None and not model.makes_albedo
    assert 0 <= out.roughness.min() and out.roughness.max() <= 1 and 0 <= out.metallic.min() <= 1
    np.testing.assert_allclose(np.linalg.norm(out.normal, axis=-1), 1, atol=1e-4)
    assert out.normal[..., 2].min() > 0  # toward the camera
    assert out.metallic[masks].mean() < 0.2  # brick is not metal


def test_beats_constants_on_held_out_materials(model):
    err, const, ang, ang_flat = [], [], [], []
    for seed, family in enumerate(("brick", "tiles", "stone", "marble", "fabric", "grass")):
        m, truth = flat_view(family, seed)
        out = model.estimate(m["albedo"][None], np.ones((1, 128, 128), bool), None, f"red {family}")
        err.append(np.abs(out.roughness[0] - m["roughness"]).mean())
        const.append(np.abs(0.5 - m["roughness"]).mean())
        cos = (out.normal[0] * truth).sum(-1).clip(-1, 1)
        ang.append(np.degrees(np.arccos(cos)).mean())
        ang_flat.append(np.degrees(np.arccos(truth[..., 2].clip(-1, 1))).mean())
    assert np.mean(err) < 0.5 * np.mean(const)
    assert np.mean(ang) < np.mean(ang_flat)


def test_its_normal_maps_beat_flat_on_textures_of_a_mesh_it_never_saw(model, spot):
    """bake_materials hands the model the texture itself: held-out relief comes back in the normal map, texel for
    texel against the ground truth, well under a flat map's error."""
    ang, ang_flat = [], []
    for seed, family in enumerate(("brick", "tiles", "stone", "wood", "fabric", "grass")):
        m, truth = flat_view(family, 10 + seed, 256)
        maps = meshdream.bake_materials(spot, m["albedo"], f"red {family}", material_model=model)
        cover = uv_maps(spot, 256).coverage
        n = maps["normal"][cover] * 2 - 1
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        ang.append(np.degrees(np.arccos((n * truth[cover]).sum(-1).clip(-1, 1))).mean())
        ang_flat.append(np.degrees(np.arccos(truth[cover][:, 2].clip(-1, 1))).mean())
    assert np.mean(ang) < 0.75 * np.mean(ang_flat)


def test_a_large_texture_goes_through_in_tiles(model):
    """Over TILE² texels the net runs in overlapping tiles (memory stays that of one tile): the result is the
    whole image's up to the context each tile pools."""
    m, _ = flat_view("brick", 20, 256)
    image = np.tile(m["albedo"], (5, 5, 1))[None, :1100, :1100]
    tiled = model.estimate(image, np.ones((1, 1100, 1100), bool), None, "red brick")
    pad = (0, 4, 0, 4)  # to a multiple of 4, as estimate pads
    with torch.inference_mode():
        whole = model.net(
            F.pad(torch.from_numpy(image).permute(0, 3, 1, 2), pad),
            F.pad(torch.ones(1, 1, 1100, 1100), pad),
            torch.tensor([family_index("red brick")]),
        )
    xy = whole[0, 2:, :1100, :1100].permute(1, 2, 0).numpy()
    assert 1100 > TILE and np.abs(tiled.normal[0, ..., :2] - xy).mean() < 0.01
    # Each tile is reported, and a cancel between tiles stops it there.
    token, seen = meshdream.CancelToken(), []

    def progress(p):
        seen.append(p.message)
        if "tile 2" in p.message:
            token.cancel()

    with pytest.raises(meshdream.CancelledError):
        model.estimate(image, np.ones((1, 1100, 1100), bool), None, "red brick", progress, token)
    assert [m for m in seen if "tile" in m] == ["builtin: tile 1 of 4", "builtin: tile 2 of 4"]


def test_the_prompts_family_steers_metallic(model):
    m, _ = flat_view("metal", 1)
    grey = np.full((1, 64, 64, 3), 0.5, np.float32) + 0.1 * (m["albedo"][None, :64, :64] - 0.5)
    mask = np.ones((1, 64, 64), bool)
    metal = model.estimate(grey, mask, None, "gray metal").metallic.mean()
    stone = model.estimate(grey, mask, None, "gray stone").metallic.mean()
    assert metal > 0.7 and stone < 0.2


def test_damaged_weights_are_one_clear_error(tmp_path):
    path = tmp_path / "material_model.safetensors"
    shutil.copy(WEIGHTS.with_suffix(".json"), path.with_suffix(".json"))
    path.write_bytes(WEIGHTS.read_bytes()[:200])  # truncated
    with pytest.raises(ModelNotFoundError, match="damaged.*train_material_model"):
        load_builtin_material_model("cpu", weights=path)
    from safetensors.torch import save_file

    save_file({"head.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelNotFoundError, match="do not fit"):
        load_builtin_material_model("cpu", weights=path)
    path.unlink()
    with pytest.raises(ModelNotFoundError, match="missing"):
        load_builtin_material_model("cpu", weights=path)


def test_model_card_holds_the_command_and_held_out_figures():
    card = json.loads(WEIGHTS.with_suffix(".json").read_text())
    assert card["training"]["reproduce"].startswith("python scripts/train_material_model.py")
    figures = card["metrics"]["held_out_views"]
    assert {"with_family", "without_family", "baselines"} <= set(figures)
    assert figures["with_family"]["roughness_mae"] < figures["baselines"]["roughness_mae_constant_0.5"]


def _train_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "train_material_model.py"
    spec = importlib.util.spec_from_file_location("train_material_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_normals_turn_with_the_view():
    # The normal labels of a turned, mirrored, scaled view equal the normals of the view's own height field.
    train = _train_script()
    size = train.SIZE
    y, x = np.mgrid[0:size, 0:size] / size
    height = 0.02 * np.sin(2 * np.pi * x) + 0.015 * np.cos(4 * np.pi * y + 1)
    texture = np.zeros((8, size, size), np.float32)
    texture[0], texture[5:] = height, height_to_normal(height).transpose(2, 0, 1)
    pool = torch.nn.functional.pad(torch.from_numpy(texture[None]).repeat(3, 1, 1, 1), (1,) * 4, mode="circular")
    scale = np.array([0.5, 1.0, 1.3])
    views = train.views(pool, np.arange(3), 48, np.random.default_rng(0), scale, [0.3, 2.0, 4.0], [False, True, True])
    for v, s in zip(views.numpy(), scale):
        h = v[0] * size / s  # in view pixels
        expect = np.stack([-(np.roll(h, -1, 1) - np.roll(h, 1, 1)) / 2, (np.roll(h, -1, 0) - np.roll(h, 1, 0)) / 2], -1)
        expect = np.concatenate([expect, np.ones_like(expect[..., :1])], -1)
        expect /= np.linalg.norm(expect, axis=-1, keepdims=True)
        cos = (expect * v[5:].transpose(1, 2, 0)).sum(-1)[2:-2, 2:-2]
        assert np.degrees(np.arccos(cos.clip(-1, 1))).max() < 0.5


def test_training_script_writes_loadable_weights(tmp_path):
    _train_script().main(["--steps", "2", "--textures", "12", "--crop", "32", "--batch", "4", "--out", str(tmp_path)])
    card = json.loads((tmp_path / "material_model.json").read_text())
    assert card["training"]["steps"] == 2 and "--steps 2" in card["training"]["reproduce"]
    loaded = load_builtin_material_model("cpu", weights=tmp_path / "material_model.safetensors")
    out = loaded.estimate(np.zeros((1, 32, 32, 3), np.float32), np.ones((1, 32, 32), bool), None)
    assert out.roughness.shape == (1, 32, 32)


def test_a_warm_start_with_colour_slopes_begins_as_the_net_it_grows_from(tmp_path):
    """--colour-slope on --init weights without them: the new inputs start at zero, so the grown net computes what
    the earlier one did (a tiny learning rate keeps the one step from moving it)."""
    small = ["--textures", "12", "--crop", "32", "--batch", "4"]
    train = _train_script()
    train.main([*small, "--steps", "2", "--out", str(tmp_path / "a")])
    grown = ["--init", str(tmp_path / "a" / "material_model.safetensors"), "--colour-slope", "--lr", "1e-12"]
    train.main([*small, *grown, "--steps", "1", "--out", str(tmp_path / "b")])
    a, b = (load_builtin_material_model("cpu", weights=tmp_path / n / "material_model.safetensors") for n in "ab")
    assert not a.net.config["colour_slope"] and b.net.config["colour_slope"]
    image = flat_view("brick", 30, 64)[0]["albedo"][None]
    out_a, out_b = (m.estimate(image, np.ones((1, 64, 64), bool), None, "red brick") for m in (a, b))
    np.testing.assert_allclose(out_a.normal, out_b.normal, atol=2e-3)
    np.testing.assert_allclose(out_a.roughness, out_b.roughness, atol=2e-3)
