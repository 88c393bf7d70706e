"""Few-step models (LCM, TCD, Hyper-SD, SDXL-Lightning): recognized at load with their sampler, steps and guidance,
and correct in the one sampling loop, so every texturing strategy runs them (tiny random-weight pipelines)."""

import functools

import meshdream
import numpy as np
import pytest
import torch
from meshdream.generators import GenerationRequest, sample
from meshdream.generators.sampling import timesteps_for
from meshdream.generators.schedulers import SAMPLERS, detect_sampler
from meshdream.geometry import render, render_texture

from tests.tiny_models import build_lora

SMALL = dict(n_views=2, view_resolution=64, texture_size=64)


@pytest.fixture(scope="module")
def sd15(tiny):
    return tiny("sd15_controlnet")


@pytest.fixture(scope="module")
def loras(sd15, tmp_path_factory):
    """LoRA files named as their publishers name them (file, or folder + pytorch_lora_weights.safetensors)."""
    root = tmp_path_factory.mktemp("loras")

    def make(name: str, title=None):
        return build_lora(root / name, sd15, title=title)

    return make


def _request(n=2, size=32, **kw):
    depth = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))
    return GenerationRequest(prompts=["red brick wall"] * n, depth=depth, **kw)


def _defaults(gen):
    return type(gen.scheduler).__name__, gen.sampler, gen.default_steps, gen.default_guidance


def test_lcm_checkpoint_is_recognized_from_its_config(tiny):
    gen = meshdream.load_generator(tiny("sd15_lcm"))
    # The guidance goes in as the UNet's w-embedding, at the scale LCM checkpoints were distilled around.
    assert _defaults(gen) == ("LCMScheduler", "lcm", 4, 8.5) and gen.guidance_embedded
    low = sample(gen, _request(steps=4, guidance=2.0))
    high = sample(gen, _request(steps=4, guidance=8.5))
    assert torch.isfinite(high).all() and (low - high).abs().max() > 1e-3  # the embedding reaches the UNet


@pytest.mark.parametrize(
    "name, title, expected",
    [
        ("lcm-lora-sdv1-5/pytorch_lora_weights.safetensors", None, ("LCMScheduler", "lcm", 4, 1.0)),
        ("TCD-SD15/pytorch_lora_weights.safetensors", None, ("TCDScheduler", "tcd", 4, 1.0)),
        ("sdxl_lightning_8step_lora.safetensors", None, ("DDIMScheduler", "trailing", 8, 1.0)),
        ("Hyper-SD15-2steps-lora.safetensors", None, ("DDIMScheduler", "trailing", 2, 1.0)),
        ("Hyper-SD15-1step-lora.safetensors", None, ("TCDScheduler", "tcd", 1, 1.0)),
        ("Hyper-SD15-8steps-CFG-lora.safetensors", None, ("DDIMScheduler", "trailing", 8, 7.5)),  # keeps its CFG
        ("style.safetensors", "LCM LoRA for SD 1.5", ("LCMScheduler", "lcm", 4, 1.0)),  # safetensors title
        ("plain/oak-style.safetensors", None, ("DPMSolverMultistepScheduler", None, 20, 7.5)),  # not few-step
    ],
)
def test_few_step_loras_are_recognized_by_name(sd15, loras, name, title, expected):
    gen = meshdream.load_generator(sd15, lora=loras(name, title))
    assert _defaults(gen) == expected
    if gen.sampler == "trailing":
        assert gen.scheduler.config.timestep_spacing == "trailing"


def test_sampler_argument_and_unknown_samplers(sd15, loras):
    plain = loras("plain/oak-style.safetensors")
    assert _defaults(meshdream.load_generator(sd15, lora=plain, sampler="tcd")) == ("TCDScheduler", "tcd", 4, 1.0)
    assert _defaults(meshdream.load_generator(sd15, sampler="lcm")) == ("LCMScheduler", "lcm", 4, 1.0)
    # An explicit sampler wins over the name; the name's step count stays.
    named = loras("sdxl_lightning_2step_lora.safetensors")
    assert _defaults(meshdream.load_generator(sd15, lora=named, sampler="lcm")) == ("LCMScheduler", "lcm", 2, 1.0)
    for spec in (sd15, "builtin"):
        with pytest.raises(meshdream.InvalidParameterError, match="lcm, tcd, trailing"):
            meshdream.load_generator(spec, sampler="turbo")
    with pytest.raises(meshdream.InvalidParameterError, match="built-in"):
        meshdream.load_generator("builtin", sampler="lcm")
    assert detect_sampler(["sd15_controlnet_0 tiny_models0", "oak-style"]) is None


def test_the_server_takes_a_sampler_with_the_model(sd15):
    from meshdream.server.schema import ModelIn

    assert dict(ModelIn(spec="builtin", options={"sampler": "lcm"}).model_spec().options) == {"sampler": "lcm"}


def test_lcm_is_seeded_whatever_the_global_random_state(sd15):
    gen = meshdream.load_generator(sd15, sampler="lcm")
    torch.manual_seed(1)
    a = sample(gen, _request(steps=4, guidance=1.0, seed=3), return_latents=True)
    torch.manual_seed(2)  # the re-noising between steps must not draw from the global generator
    b = sample(gen, _request(steps=4, guidance=1.0, seed=3), return_latents=True)
    c = sample(gen, _request(steps=4, guidance=1.0, seed=4), return_latents=True)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_the_hooked_x0_is_what_the_step_denoises_to(sd15, sampler):
    """A hook that pins x0 pins the result: for LCM x0 is the boundary-scaled denoised latent (c_out x0(eps) +
    c_skip x_t), made large here (small timestep_scaling) so a loop that ignored it would miss the target. TCD's
    last step lands on timestep 0, not alpha_bar 1: sqrt(1 - alpha_bar[0]) = 0.03 of the noise estimate stays."""
    gen = meshdream.load_generator(sd15, sampler=sampler)
    if sampler == "lcm":
        gen.scheduler = type(gen.scheduler).from_config(gen.scheduler.config, timestep_scaling=0.002)
        c_skip, _ = gen.scheduler.get_scalings_for_boundary_condition_discrete(torch.tensor(259))
        assert c_skip > 0.3
    target = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    out = sample(gen, _request(n=1, steps=4, guidance=1.0), hook=lambda i, n, x0: target, return_latents=True)
    torch.testing.assert_close(out, target, atol=0.15 if sampler == "tcd" else 1e-4, rtol=0)


def test_img2img_picks_each_samplers_timesteps(sd15):
    lcm = meshdream.load_generator(sd15, sampler="lcm").scheduler
    tcd = meshdream.load_generator(sd15, sampler="tcd").scheduler
    trailing = meshdream.load_generator(sd15, sampler="trailing").scheduler
    # Consistency samplers spread all their steps below the strength's noise level ...
    for sched in (lcm, tcd):
        t = timesteps_for(sched, 4, 0.35)
        assert len(t) == 4 and t.max() < 350 and (t.diff() < 0).all()
        assert len(timesteps_for(sched, 4, 0.01)) == 1  # fewer only where the schedule has fewer
        assert timesteps_for(sched, 4, 1.0).max() == 999
    # ... the others run the last part of their own (trailing) schedule.
    assert timesteps_for(trailing, 4, 1.0).tolist() == [999, 749, 499, 249]
    assert timesteps_for(trailing, 4, 0.5).tolist() == [499, 249]


def _run(strategy, spot, gen):
    if strategy == "restyle":
        texture = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
        return meshdream.restyle_texture(spot, texture, "oak", 0.5, generator=gen, n_views=2, view_resolution=64)
    if strategy == "refine":
        return meshdream.texture_mesh(spot, "oak", gen, refine_scale=2, **SMALL)
    if strategy == "project":
        init = np.full((64, 64, 3), 0.5, np.float32)
        return meshdream.texture_mesh(spot, "oak", gen, strategy="project", init_image=init, strength=0.6, **SMALL)
    return meshdream.texture_mesh(spot, "oak", gen, strategy=strategy, **SMALL)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_strategy_runs_every_sampler(spot, sd15, sampler):
    gen = meshdream.load_generator(sd15, sampler=sampler)
    for strategy in ("sync", "sequential", "project", "restyle", "refine"):
        r = _run(strategy, spot, gen)
        assert np.isfinite(r.texture).all() and (r.weight > 0).any(), strategy
        assert all(np.isfinite(img).all() for _, img in r.views), strategy


def _disagreement(mesh, result) -> float:
    """Mean colour difference between the generated views and renders of the texture baked from them (object
    pixels): views that show one surface alike bake to a texture that renders back as they are."""
    errors = []
    for camera, image in result.views:
        maps = render(mesh, camera)
        errors.append(np.abs(render_texture(mesh, result.texture, camera, 0.0, maps) - image)[maps.mask].mean())
    return float(np.mean(errors))


def test_lcm_sync_keeps_the_views_one_texture(spot, sd15, monkeypatch):
    """Synchronized with LCM's 4 steps, the views agree about as well as with DPM-Solver++ at 20, and far better
    than the same views denoised apart (the measure tells the two apart)."""
    lcm = meshdream.load_generator(sd15, sampler="lcm")
    dpm = meshdream.load_generator(sd15)
    settings = dict(n_views=4, view_resolution=64, texture_size=128)
    synced_lcm = _disagreement(spot, meshdream.texture_mesh(spot, "red brick wall", lcm, **settings))
    synced_dpm = _disagreement(spot, meshdream.texture_mesh(spot, "red brick wall", dpm, **settings))
    from meshdream.texturing import pipeline, sync

    monkeypatch.setattr(pipeline, "texture_sync", functools.partial(sync.texture_sync, sync_fraction=0.0))
    apart_lcm = _disagreement(spot, meshdream.texture_mesh(spot, "red brick wall", lcm, **settings))
    assert synced_lcm <= 1.05 * synced_dpm
    assert synced_lcm < 0.9 * apart_lcm


def test_cli_sampler_option_reaches_the_loader(sd15, loras, capsys):
    from meshdream.cli import _generator, build_parser

    lora = loras("plain/oak-style.safetensors")
    for command in (["texture", "m.obj", "--prompt", "oak", "-o", "m.glb"], ["serve"]):
        args = build_parser().parse_args([*command, "--model", str(sd15), "--lora", str(lora), "--sampler", "tcd"])
        assert args.sampler == "tcd"
    args = build_parser().parse_args(["texture", "m.obj", "--prompt", "oak", "-o", "m.glb", "--sampler", "lcm"])
    assert _defaults(_generator(sd15, args)) == ("LCMScheduler", "lcm", 4, 1.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["texture", "m.obj", "--prompt", "oak", "-o", "m.glb", "--sampler", "turbo"])
    assert "lcm" in capsys.readouterr().err


def test_trailing_is_eulers_trailing_sampler_and_sigma_space_schedulers_take_the_hook(sd15, spot):
    """ "trailing" runs DDIM for Lightning's Euler trailing: the same latents, hooked or not; and Euler itself (sigma
    space) now works under the x0 hook as well, as does euler_a under synchronized texturing."""
    import diffusers

    from tests.tiny_models import scheduler

    class Euler(diffusers.EulerDiscreteScheduler):
        @property
        def init_noise_sigma(self):  # diffusers starts "trailing" at sigma_max: 0.2 % off the exact scale
            return (self.sigmas.max() ** 2 + 1) ** 0.5

    euler = Euler.from_config(scheduler().config, timestep_spacing="trailing")
    gens = [meshdream.load_generator(sd15, sampler="trailing"), meshdream.load_generator(sd15, scheduler=euler)]

    def mean_of_views(i, n, x0):  # a hook that changes every view
        return x0.mean(0, keepdim=True).expand_as(x0)

    for hook in (None, mean_of_views):
        ddim, eul = (sample(g, _request(steps=4, guidance=1.0), hook=hook, return_latents=True) for g in gens)
        torch.testing.assert_close(eul, ddim, atol=1e-4, rtol=1e-4)
    target = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    pinned = sample(gens[1], _request(n=1, steps=4, guidance=1.0), hook=lambda i, n, x0: target, return_latents=True)
    torch.testing.assert_close(pinned, target, atol=1e-4, rtol=0)
    r = meshdream.texture_mesh(spot, "oak", meshdream.load_generator(sd15, scheduler="euler_a"), steps=3, **SMALL)
    assert np.isfinite(r.texture).all()
