"""The built-in material model (issue 27): the shipped weights read roughness, metallic and surface detail off
unlit views better than constants do, the prompt's family steers it, and a damaged file is one clear error."""

import json
import shutil

import numpy as np
import pytest
import torch
from meshdream.generators.base import ModelNotFoundError
from meshdream.generators.builtin.material_model import WEIGHTS, load_builtin_material_model
from meshdream.generators.builtin.materials import height_to_normal, material_maps
from meshdream.geometry import orbit_cameras, render, render_texture


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
