"""Every texturing feature with the model on another device than the CPU (tests/device_double.py stands in for a
GPU): each must run there and give what the same job gives on the CPU."""

import meshdream
import numpy as np
import pytest
import torch
from meshdream.generators import GenerationRequest, sample

from tests.device_double import other_device

SMALL = dict(n_views=2, view_resolution=64, texture_size=64, steps=2)


def _both(load, run):
    """run(generators) on the CPU, then with the generators moved to the stand-in device (loading stays outside
    the double: diffusers builds modules on PyTorch's real meta device while loading)."""
    on_cpu = run(load())
    gens = load()
    with other_device() as dev:
        for gen in gens if isinstance(gens, tuple) else (gens,):
            gen.to(dev)
            assert all(p.device == dev for m in gen.networks() for p in m.parameters())
        on_dev = run(gens)
    return on_cpu, on_dev


@pytest.mark.parametrize("strategy", ["sync", "sequential", "project"])
@pytest.mark.parametrize("model", ["builtin", "sd15_controlnet"])
def test_every_strategy_on_the_generators_device(spot, tiny, model, strategy):
    spec = "builtin" if model == "builtin" else tiny(model)
    kw = dict(SMALL, view_resolution=32 if model == "builtin" else 64)
    if strategy == "project":
        kw["init_image"] = np.full((kw["view_resolution"],) * 2 + (3,), 0.5, np.float32)

    def run(gen):
        return meshdream.texture_mesh(spot, "red brick", gen, strategy=strategy, **kw).texture

    # float32 on both sides: the CPU's default bfloat16 arithmetic for the built-in model is not what is compared here
    cpu, dev = _both(lambda: meshdream.load_generator(spec, device="cpu", dtype=torch.float32), run)
    np.testing.assert_allclose(dev, cpu, atol=2e-4)


@pytest.mark.parametrize("kind", ["sdxl_controlnet", "sd2_depth"])
def test_other_depth_families(spot, tiny, kind):
    def run(gen):
        return meshdream.texture_mesh(spot, "green wood", gen, **SMALL).texture

    cpu, dev = _both(lambda: meshdream.load_generator(tiny(kind)), run)
    np.testing.assert_allclose(dev, cpu, atol=2e-4)


def test_uv_inpainting_refine_and_seamless_tiles(spot, tiny):
    holes = np.zeros((64, 64), bool)
    holes[16:40, 16:40] = True
    texture = np.full((64, 64, 3), 0.5, np.float32)

    def run(gens):
        depth, inpaint = gens
        return (
            meshdream.inpaint_uv(spot, texture, holes, generator=inpaint, prompt="moss", steps=2),
            meshdream.texture_mesh(spot, "oak", depth, refine_scale=2, **SMALL).texture,
            meshdream.seamless_texture("marble", depth, size=64, steps=2),
        )

    on_cpu, on_dev = _both(
        lambda: (meshdream.load_generator(tiny("sd15_controlnet")), meshdream.load_generator(tiny("sd_inpaint"))), run
    )
    for a, b in zip(on_cpu, on_dev):
        np.testing.assert_allclose(b, a, atol=2e-4)


def test_lora_and_ip_adapter(tiny, tmp_path):
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from tests.tiny_models import build_ip_adapter

    torch.manual_seed(3)
    unet = diffusers.UNet2DConditionModel.from_pretrained(tiny("sd15_controlnet"), subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"]))
    diffusers.StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", get_peft_model_state_dict(unet))
    adapter = build_ip_adapter(tmp_path / "ip", tiny("sd15_controlnet"))
    red = torch.zeros(1, 3, 48, 48)
    red[:, 0] = 1
    request = GenerationRequest(
        prompts=["red brick"], depth=torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)), steps=2
    )

    def run(gen):
        request.reference_image = red
        return sample(gen, request)

    cpu, dev = _both(
        lambda: meshdream.load_generator(tiny("sd15_controlnet"), lora=tmp_path / "lora", ip_adapter=adapter),
        run,
    )
    torch.testing.assert_close(dev, cpu, atol=2e-4, rtol=0)
    assert dev.device.type == "cpu"  # images come back on the CPU whatever the model's device


def test_the_device_double_catches_a_missing_transfer():
    # What broke sync texturing on CUDA: a CPU mask and CPU values written into a tensor on the device.
    with other_device() as dev:
        x = torch.zeros(2, 3, device=dev)
        with pytest.raises(RuntimeError, match="same device"):
            x[:, torch.tensor([True, False, True])] = torch.ones(2, 2)
        with pytest.raises(RuntimeError, match="same device"):
            x + torch.ones(2, 3)
        x[:, torch.tensor([True, False, True])] = torch.ones((), device=dev)  # CPU indices are fine, as on CUDA
        assert x.cpu().sum() == 4


@pytest.mark.parametrize("kind, sampler", [("sd15_controlnet", "tcd"), ("sd15_lcm", None)])
def test_few_step_samplers_on_the_generators_device(spot, tiny, kind, sampler):
    """The seeded re-noising, LCM's boundary scalings in the sync hook and an LCM checkpoint's guidance embedding
    reach the device: the same texture as on the CPU."""

    def run(gen):
        return meshdream.texture_mesh(spot, "red brick", gen, **SMALL).texture

    cpu, dev = _both(lambda: meshdream.load_generator(tiny(kind), sampler=sampler), run)
    np.testing.assert_allclose(dev, cpu, atol=2e-4)
