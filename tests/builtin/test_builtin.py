import meshdream
import numpy as np
import pytest
import torch
from meshdream.generators import GenerationRequest, sample
from meshdream.generators.builtin.materials import COLOURS, FAMILIES, material
from meshdream.generators.builtin.vocab import WORD_ID, parse


@pytest.fixture(scope="module")
def builtin():
    return meshdream.load_generator("builtin")


def test_shipped_weights_texture_a_mesh_by_default(spot):
    # generator=None loads the built-in model: no download, no configuration.
    r = meshdream.texture_mesh(spot, "blue tiles", n_views=4, view_resolution=64, texture_size=128, steps=4)
    assert r.texture.shape == (128, 128, 3) and np.isfinite(r.texture).all()
    covered = meshdream.uv_maps(spot, 128).coverage
    assert (r.weight[covered] > 0).mean() > 0.8  # four ring views at 64 px see most of the cow
    assert 0 <= r.texture.min() and r.texture.max() <= 1


def test_same_seed_same_output(builtin):
    depth = torch.zeros(2, 1, 64, 64)
    depth[..., 16:48, 16:48] = 0.8

    def req(seed):
        return GenerationRequest(prompts=["red brick"] * 2, depth=depth, steps=4, seed=seed)

    a, b, c = sample(builtin, req(3)), sample(builtin, req(3)), sample(builtin, req(4))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3


def test_unknown_prompt_words_are_reported(builtin):
    depth = torch.full((1, 1, 32, 32), 0.6)
    with pytest.warns(meshdream.MeshDreamWarning, match="'dragon'"):
        sample(builtin, GenerationRequest(prompts=["green dragon scales, side view"], depth=depth, steps=1))
    assert builtin.unknown_words == ["dragon", "scales"]
    ids, unknown = parse("A grey wooden texture, front view")
    assert ids == [WORD_ID["gray"], WORD_ID["wood"]] and unknown == []


def test_inpainting_keeps_known_pixels(builtin):
    depth = torch.full((1, 1, 64, 64), 0.7)
    known = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:44, 20:44] = 1  # generate only here
    out = sample(
        builtin, GenerationRequest(prompts=["wood"], depth=depth, init_images=known, inpaint_mask=mask, steps=4)
    )
    keep = mask[0, 0] == 0
    torch.testing.assert_close(out[0][:, keep], known[0][:, keep])
    assert (out[0][:, ~keep] - known[0][:, ~keep]).abs().mean() > 0.02


def test_procedural_families_are_distinct():
    rng = np.random.default_rng(0)
    images = {f: material(f, "red", 64, rng) for f in FAMILIES}
    assert len(FAMILIES) >= 10 and len(COLOURS) >= 10
    for f, img in images.items():
        assert img.shape == (64, 64, 3) and 0 <= img.min() and img.max() <= 1, f
    flat = np.stack([i.ravel() for i in images.values()])
    dist = np.abs(flat[:, None] - flat[None]).mean(-1)
    assert dist[~np.eye(len(flat), dtype=bool)].min() > 0.01


@pytest.mark.parametrize("strategy", ["sequential", "project"])
def test_plugs_into_the_other_strategies(spot, builtin, strategy):
    r = meshdream.texture_mesh(
        spot, "green grass", builtin, strategy=strategy, n_views=2, view_resolution=64, texture_size=64, steps=2
    )
    assert r.texture.shape == (64, 64, 3) and (r.weight > 0).any()


def test_plugs_into_uv_inpainting(spot, builtin):
    maps = meshdream.uv_maps(spot, 64)
    texture = np.full((64, 64, 3), 0.5, np.float32)
    hole = np.zeros((64, 64), bool)
    hole[20:44, 20:44] = True
    hole &= maps.coverage
    out = meshdream.inpaint_uv(spot, texture, hole, generator=builtin, prompt="blue fabric", steps=2)
    assert np.abs(out[hole] - 0.5).mean() > 0.01


def test_weights_from_a_training_run_load_with_their_card(tmp_path, builtin):
    import json
    import shutil

    from meshdream.generators import ModelNotFoundError
    from meshdream.generators.builtin import CARD, WEIGHTS, load_builtin

    # The card's guidance (picked by the evaluation on validation views) is the generator's default.
    assert builtin.default_guidance == json.loads(CARD.read_text())["guidance"]
    run = tmp_path / "run" / "texture_model.safetensors"
    run.parent.mkdir()
    shutil.copy(WEIGHTS, run)
    with pytest.raises(ModelNotFoundError, match="texture_model.json"):
        load_builtin(device="cpu", weights=run)  # weights without their card
    card = json.loads(CARD.read_text())
    card["guidance"] = 2.5
    run.with_suffix(".json").write_text(json.dumps(card))
    assert load_builtin(device="cpu", weights=run).default_guidance == 2.5


def test_texturing_defaults_come_from_the_model_card(spot, builtin):
    """Unset view resolution, texture size and steps take what the card says suits the model (its training
    resolution), not SD's 512 px views: the README's first example must finish in seconds on a CPU."""
    import json

    from meshdream.generators.builtin import CARD

    defaults = json.loads(CARD.read_text()).get("defaults", {})
    assert builtin.native_resolution == defaults.get("view_resolution", 128)
    assert builtin.default_texture_size == defaults.get("texture_size", 512)
    r = meshdream.texture_mesh(spot, "red brick", builtin, n_views=1, steps=1)
    assert r.texture.shape == (builtin.default_texture_size,) * 2 + (3,)
    assert np.asarray(r.views[0][1]).shape[:2] == (builtin.native_resolution,) * 2


def test_training_renders_wrap_materials_around_the_surface():
    """Materials are looked up in 3D (triplanar), each texture from its own seed: any number of worker processes
    renders the same set, from the core's own meshes."""
    from meshdream.generators.builtin.dataset import _wrap_bilinear, make_renders, training_meshes, triplanar

    rng = np.random.default_rng(0)
    image = material("checker", "red", 32, rng)
    points = rng.uniform(-2, 2, (50, 3))
    facing_z = triplanar(image, points, np.tile([0.0, 0.0, 1.0], (50, 1)))
    np.testing.assert_allclose(facing_z, _wrap_bilinear(image, points[:, 0], -points[:, 1]), atol=1e-6)
    np.testing.assert_allclose(facing_z, triplanar(image, points + [3.0, -1.0, 0.5], [[0, 0, 1.0]] * 50), atol=1e-5)
    meshes = training_meshes(shapes_per_category=0)
    a, b = (make_renders(3, 2, 32, 5, meshes, texture_size=64, workers=w) for w in (1, 2))
    for field in ("albedo", "depth", "normal", "family", "colour"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.albedo.shape == (6, 32, 32, 3) and (a.albedo[a.depth == 0] == 255).all()


def test_bfloat16_network_draws_what_float32_draws():
    """The default arithmetic (bfloat16 on CPUs that compute it natively) changes the pictures only by rounding: the
    sampler's state stays float32, so the same seed gives nearly the same image either way."""
    depth = torch.zeros(2, 1, 64, 64)
    depth[..., 12:52, 12:52] = 0.8
    request = GenerationRequest(prompts=["red brick", "blue dots"], depth=depth, steps=6, seed=5)
    fp32 = meshdream.load_generator("builtin", dtype=torch.float32)
    bf16 = meshdream.load_generator("builtin", dtype=torch.bfloat16)
    assert fp32.network_dtype == torch.float32 and bf16.network_dtype == torch.bfloat16
    a, b = sample(fp32, request), sample(bf16, request)
    assert a.dtype == b.dtype == torch.float32
    assert 0 < (a - b).abs().mean() < 0.02  # rounding, not another picture
    with pytest.raises(meshdream.InvalidParameterError, match="float32 or torch.bfloat16"):
        meshdream.load_generator("builtin", dtype=torch.float16)
