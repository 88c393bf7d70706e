"""The one sampling loop: text-to-image, img2img and inpainting for any Generator, with a per-step hook.

The hook sees each step's prediction of the clean latents (x0) for the whole batch and may replace it; the loop
turns the edited x0 back into the noise estimate the scheduler expects. Synchronized multi-view texturing uses
this to make all views agree at every step. Consistency samplers (LCM, TCD) fit too: x0 is the denoised latent
their step re-noises, and their re-noising draws from the request's seeded generator.
"""

from __future__ import annotations

import inspect
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..progress import CancelToken, PreviewFn, ProgressCallback, Reporter
from .base import GenerationRequest, Generator
from .graphs import DenoiserGraphs

X0Hook = Callable[[int, int, torch.Tensor], torch.Tensor]  # (step index, steps, x0) -> x0


def _noise(shape, rng: torch.Generator, device, dtype) -> torch.Tensor:
    """Drawn on the CPU so a seed gives the same image on every device."""
    return torch.randn(shape, generator=rng, dtype=torch.float32).to(device=device, dtype=dtype)


def timesteps_for(sched, steps: int, strength: float, device=None) -> torch.Tensor:
    """The timesteps a request runs, the scheduler set up to run them. img2img (strength < 1) starts part way:
    consistency schedulers (LCM, TCD) spread their steps over the first `strength` of their distillation schedule
    (as diffusers' img2img pipelines for them do: fewer than `steps` only where it has fewer); the others run the
    last `strength` of their `steps`."""
    if strength < 1.0 and "strength" in inspect.signature(sched.set_timesteps).parameters:
        origin = sched.config.original_inference_steps
        strength = max(strength, 1.0 / origin)
        sched.set_timesteps(min(steps, int(origin * strength)), device=device, strength=strength)
        return sched.timesteps
    sched.set_timesteps(steps, device=device)
    if strength >= 1.0:
        return sched.timesteps
    keep = min(max(int(round(steps * strength)), 1), steps)
    timesteps = sched.timesteps[len(sched.timesteps) - keep * sched.order :]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(len(sched.timesteps) - len(timesteps))
    return timesteps


def _alpha_bar(generator: Generator, sched, t: torch.Tensor) -> torch.Tensor:
    """alpha_bar of the step at `t`: from the scheduler's own sigma for sigma-space schedulers (Euler: x = x0 +
    sigma eps, its timesteps may fall between the table's), as 1 / (1 + sigma^2)."""
    if getattr(sched, "init_noise_sigma", 1.0) == 1.0:
        return generator.alpha_bar(t)
    sigma = sched.sigmas[sched.step_index].to(generator.device, torch.float32)
    return 1.0 / (1.0 + sigma**2)


def _boundary(sched, t: torch.Tensor):
    """(c_skip, c_out): a consistency scheduler's (LCM) denoised latent is c_out * x0(eps) + c_skip * x_t; others
    use x0(eps) itself."""
    scalings = getattr(sched, "get_scalings_for_boundary_condition_discrete", None)
    return scalings(t) if scalings is not None else (0.0, 1.0)


def _resize(t: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    if t.shape[-2:] == size:
        return t
    return torch.nn.functional.interpolate(
        t, size=size, mode=mode, **({} if mode == "nearest" else {"antialias": True})
    )


def _previewer(generator: Generator, model_in: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> PreviewFn:
    """A step's clean estimate x0 as (B, h, w, 3) uint8 views, computed (on the device) only when a progress
    consumer asks, so an unwatched loop pays nothing. `model_in` is the variance-preserving input every scheduler
    feeds the model, so x0 = (x - sqrt(1 - a) eps) / sqrt(a) holds for sigma-space schedulers too."""

    @torch.no_grad()
    def preview() -> np.ndarray:
        a = generator.alpha_bar(t)
        x0 = (model_in.float() - (1 - a).sqrt() * eps.float()) / a.sqrt()
        return (generator.preview_rgb(x0) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    return preview


@torch.no_grad()
def sample(
    generator: Generator,
    request: GenerationRequest,
    hook: Optional[X0Hook] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    return_latents: bool = False,
):
    """Generate images (B, 3, H, W) in [0, 1] (float32, CPU) for `request`."""
    generator.check(request)
    if not 0.0 < request.strength <= 1.0:
        raise InvalidParameterError(f"Strength {request.strength} must be in (0, 1]; 1 starts from pure noise.")
    if request.steps < 1:
        raise InvalidParameterError(f"Steps {request.steps} must be at least 1 (20 to 30 is typical).")
    report = Reporter(progress, cancel)
    dev, dt = generator.device, generator.dtype
    sched = generator.scheduler
    n = len(request.prompts)
    h, w = request.size
    lh, lw = h // generator.latent_factor, w // generator.latent_factor
    shape = (n, generator.latent_channels, lh, lw)

    prompt = generator.encode_prompt(request)
    cond = generator.prepare(request)
    strength = request.strength if request.init_images is not None else 1.0
    timesteps = timesteps_for(sched, request.steps, strength, dev)
    # One seeded stream for the start noise and then any noise the scheduler's steps draw (LCM / TCD re-noise,
    # ancestral samplers): a seed gives the same result.
    rng = torch.Generator(device="cpu").manual_seed(int(request.seed))
    step_kwargs = {"generator": rng} if "generator" in inspect.signature(sched.step).parameters else {}
    noise = _noise(shape, rng, dev, dt)

    known = None
    if request.init_images is not None:
        known = generator.encode(request.init_images.to(dev, dt))
    if known is not None and request.strength < 1.0:
        latents = sched.add_noise(known, noise, timesteps[:1].repeat(n))
    else:
        latents = noise * sched.init_noise_sigma
    release = None
    if request.inpaint_mask is not None and "native_inpaint" not in cond:
        # Blended latent diffusion: a pixel with mask m is pinned to the known latents (noised to the current
        # level) while the step fraction is below 1 - m: m = 1 generates, 0 keeps, 0.5 refines the second half.
        release = _resize(request.inpaint_mask.to(dev, torch.float32), (lh, lw), "nearest")

    denoise = DenoiserGraphs(generator, prompt, cond, request.guidance)
    total = len(timesteps)
    preview = None  # the previous step's x0, shown with the next report
    for i, t in enumerate(timesteps):
        report("denoise", i, total, preview=preview)
        model_in = sched.scale_model_input(latents, t)
        eps = torch.cat(
            [
                denoise(model_in[s : s + generator.max_batch], t, slice(s, min(s + generator.max_batch, n)))
                for s in range(0, n, generator.max_batch)
            ]
        )
        if hook is not None:
            # On the variance-preserving model input (the latents themselves but for sigma-space schedulers), so
            # one conversion serves every scheduler.
            a = _alpha_bar(generator, sched, t)
            c_skip, c_out = _boundary(sched, t)
            x, eps32 = model_in.float(), eps.float()
            x0 = c_out * (x - (1 - a).sqrt() * eps32) / a.sqrt() + c_skip * x
            x0 = hook(i, total, x0).to(dev, torch.float32)
            eps = ((x - a.sqrt() * (x0 - c_skip * x) / c_out) / (1 - a).sqrt()).to(dt)
        # After the hook, so it shows the edited (synchronized) x0; computed only if asked.
        preview = _previewer(generator, model_in, eps, t)
        latents = sched.step(eps, t, latents, **step_kwargs).prev_sample
        if release is not None and i + 1 < total:
            pinned = (release < 1.0 - (i + 1) / total).to(dt)
            noised = sched.add_noise(known, noise, timesteps[i + 1 : i + 2].repeat(n))
            latents = pinned * noised + (1 - pinned) * latents
    report("denoise", total, total, preview=preview)
    denoise.release()
    if release is not None:
        kept = (release <= 0).to(dt)
        latents = kept * known + (1 - kept) * latents
    if return_latents:
        return latents
    images = generator.decode(latents)
    if request.inpaint_mask is not None and request.init_images is not None:
        # Kept pixels (mask 0) come back exactly as given: the latent codec is lossy.
        m = (_resize(request.inpaint_mask.float().cpu(), (h, w), "nearest") > 0).float()
        images = m * images + (1 - m) * request.init_images.float().cpu()
    return images
