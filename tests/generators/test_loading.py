import shutil

import meshdream
import pytest
import torch
from meshdream.generators import GenerationRequest, sample


def _request(n=2, size=32, **kw):
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(n, 1, size, size, generator=g)
    return GenerationRequest(prompts=["red brick wall"] * n, depth=depth, steps=3, **kw)


@pytest.mark.parametrize(
    "kind, family, xl",
    [
        ("sd15_controlnet", "controlnet", False),
        ("sdxl_controlnet", "controlnet", True),
        ("sd2_depth", "depth_unet", False),
    ],
)
def test_depth_families_load_and_generate(tiny, kind, family, xl):
    gen = meshdream.load_generator(tiny(kind))
    assert gen.family == family and gen.xl == xl and "depth" in gen.capabilities
    assert type(gen.scheduler).__name__ == "DPMSolverMultistepScheduler"  # fast multistep by default
    out = sample(gen, _request())
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    again = sample(gen, _request())
    torch.testing.assert_close(out, again)  # same seed, same images
    other = sample(gen, _request(seed=1))
    assert (out - other).abs().max() > 1e-3


def test_inpainting_model_cannot_do_depth(tiny):
    gen = meshdream.load_generator(tiny("sd_inpaint"))
    assert gen.family == "inpaint" and "depth" not in gen.capabilities
    with pytest.raises(meshdream.GeneratorKindError, match="cannot do depth"):
        sample(gen, _request())
    # ... but it inpaints, and keeps the known pixels exactly.
    init = torch.rand(1, 3, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    out = sample(gen, GenerationRequest(prompts=["wood"], init_images=init, inpaint_mask=mask, steps=3))
    torch.testing.assert_close(out[..., :8, :], init[..., :8, :])
    assert (out[..., 8:24, 8:24] - init[..., 8:24, 8:24]).abs().mean() > 0.01


def test_plain_text_to_image_model_needs_a_controlnet(tiny):
    with pytest.raises(meshdream.GeneratorKindError, match="depth ControlNet"):
        meshdream.load_generator(tiny("sd15_plain"))
    # A separately given ControlNet completes it.
    gen = meshdream.load_generator(tiny("sd15_plain"), controlnet=tiny("sd15_controlnet") / "controlnet")
    assert gen.family == "controlnet"
    assert sample(gen, _request(n=1)).shape == (1, 3, 32, 32)


def test_hugging_face_ids_come_from_the_local_cache_only(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snap = cache / "models--tiny-org--tiny-depth" / "snapshots" / "0123abc"
    shutil.copytree(tiny("sd2_depth"), snap)
    (cache / "models--tiny-org--tiny-depth" / "refs").mkdir()
    (cache / "models--tiny-org--tiny-depth" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    gen = meshdream.load_generator("tiny-org/tiny-depth")
    assert gen.family == "depth_unet"
    listed = meshdream.generators.list_cached_models()
    assert listed[0]["id"] == "tiny-org/tiny-depth" and "depth" in listed[0]["kind"]
    with pytest.raises(meshdream.ModelNotFoundError, match="huggingface-cli download nobody/missing"):
        meshdream.load_generator("nobody/missing")


def test_missing_paths_and_wrong_folders(tmp_path, tiny):
    with pytest.raises(meshdream.ModelNotFoundError, match="No model at"):
        meshdream.load_generator(tmp_path / "nothing-here")
    with pytest.raises(meshdream.GeneratorKindError, match="model_index.json"):
        meshdream.load_generator(tiny("sd15_controlnet") / "controlnet")
    with pytest.raises(meshdream.InvalidParameterError, match="memory"):
        meshdream.load_generator(tiny("sd2_depth"), memory="tiny")


def test_single_file_unet_weights_over_a_base_model(tiny, tmp_path):
    from safetensors.torch import save_file

    other = meshdream.load_generator(tiny("sd2_depth", seed=1))
    weights = tmp_path / "finetuned_unet.safetensors"
    save_file({k: v.contiguous() for k, v in other.parts.unet.state_dict().items()}, str(weights))
    gen = meshdream.load_generator(weights, base=str(tiny("sd2_depth", seed=0)))
    base = meshdream.load_generator(tiny("sd2_depth", seed=0))
    for name, p in gen.parts.unet.state_dict().items():
        torch.testing.assert_close(p, other.parts.unet.state_dict()[name])
    assert not torch.allclose(sample(gen, _request(n=1)), sample(base, _request(n=1)))
    with pytest.raises(meshdream.InvalidParameterError, match="base="):
        meshdream.load_generator(weights)


def test_lora_changes_the_output_by_its_scale(tiny, tmp_path):
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(3)
    unet = diffusers.UNet2DConditionModel.from_pretrained(tiny("sd15_controlnet"), subfolder="unet")
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    lora_dir = tmp_path / "lora"
    diffusers.StableDiffusionPipeline.save_lora_weights(lora_dir, unet_lora_layers=get_peft_model_state_dict(unet))
    lora_file = next(lora_dir.glob("*.safetensors"))

    plain = sample(meshdream.load_generator(tiny("sd15_controlnet")), _request(n=1))
    with_lora = sample(meshdream.load_generator(tiny("sd15_controlnet"), lora=lora_file), _request(n=1))
    zero = sample(meshdream.load_generator(tiny("sd15_controlnet"), lora=lora_dir, lora_scale=0.0), _request(n=1))
    assert (with_lora - plain).abs().max() > 1e-3
    torch.testing.assert_close(zero, plain, atol=1e-5, rtol=0)
    with pytest.raises(meshdream.ModelNotFoundError, match="No LoRA"):
        meshdream.load_generator(tiny("sd15_controlnet"), lora=tmp_path / "none.safetensors")


def test_step_hook_and_progress_and_cancel(tiny):
    gen = meshdream.load_generator(tiny("sd15_controlnet"))
    seen = []

    def hook(i, total, x0):
        seen.append(i)
        return torch.zeros_like(x0)  # force the clean prediction: the result must follow it

    reports = []
    out = sample(gen, _request(n=1, guidance=1.0), hook=hook, progress=reports.append, return_latents=True)
    assert seen == [0, 1, 2]
    assert [r.step for r in reports] == [0, 1, 2, 3]
    assert out.abs().max() < 1e-2  # latents end at the forced x0 = 0

    token = meshdream.CancelToken()

    def stop_at_one(report):
        if report.step == 1:
            token.cancel()

    steps_run = []
    with pytest.raises(meshdream.CancelledError):
        sample(gen, _request(n=1), hook=lambda i, n, x: steps_run.append(i) or x, progress=stop_at_one, cancel=token)
    assert steps_run == [0]  # stopped within one step of the request


def test_ip_adapter_reference_image_steers_generation(tiny, tmp_path):
    from tests.tiny_models import build_ip_adapter

    adapter = build_ip_adapter(tmp_path / "ip", tiny("sd15_controlnet"))
    gen = meshdream.load_generator(tiny("sd15_controlnet"), ip_adapter=adapter)
    assert gen.parts.image_encoder is not None
    red = torch.zeros(1, 3, 48, 48)
    red[:, 0] = 1
    blue = torch.zeros(1, 3, 48, 48)
    blue[:, 2] = 1
    a = sample(gen, _request(n=1, reference_image=red))
    b = sample(gen, _request(n=1, reference_image=blue))
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(sample(gen, _request(n=1, reference_image=red)), a)
    sample(gen, _request(n=1))  # no reference: neutral image embedding
    plain = meshdream.load_generator(tiny("sd15_controlnet"))
    with pytest.raises(meshdream.GeneratorKindError, match="IP-Adapter"):
        sample(plain, _request(n=1, reference_image=red))
    with pytest.raises(meshdream.ModelNotFoundError, match="image encoder"):
        meshdream.load_generator(tiny("sd15_controlnet"), ip_adapter=adapter, image_encoder=tmp_path / "none")


def test_memory_presets_chunk_the_work_without_changing_the_images(tiny):
    fast = meshdream.load_generator(tiny("sd15_controlnet"), memory="none")
    low = meshdream.load_generator(tiny("sd15_controlnet"), memory="low")
    minimal = meshdream.load_generator(tiny("sd15_controlnet"), memory="minimal")
    assert (fast.memory, fast.max_batch, fast.vae_batch) == ("none", 16, 16)
    assert (low.memory, low.max_batch, low.vae_batch) == ("low", 4, 1)
    assert (minimal.memory, minimal.max_batch, minimal.vae_batch) == ("minimal", 2, 1)
    assert meshdream.load_generator(tiny("sd15_controlnet"), memory="auto").memory == "none"  # no GPU: no limits
    init = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    request = _request(n=6, init_images=init, strength=0.7)  # img2img: encode, denoise and decode are all chunked
    reference = sample(fast, request)
    torch.testing.assert_close(sample(low, request), reference, atol=1e-4, rtol=0)
    torch.testing.assert_close(sample(minimal, request), reference, atol=1e-4, rtol=0)
    with pytest.raises(meshdream.InvalidParameterError, match="memory="):
        meshdream.load_generator(tiny("sd15_controlnet"), memory="tiny")
