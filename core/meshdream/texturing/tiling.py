"""Seamless, tileable flat textures: every convolution pads circularly, so the image wraps around its edges."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..generators import GenerationRequest, sample
from ..progress import CancelToken, ProgressCallback


@contextmanager
def circular_padding(modules):
    """Temporarily switch every padded Conv2d in `modules` to circular padding."""
    changed = []
    for module in modules:
        for conv in module.modules():
            if (
                isinstance(conv, torch.nn.Conv2d)
                and conv.padding_mode != "circular"
                and any(p > 0 for p in conv.padding if isinstance(p, int))
            ):
                changed.append((conv, conv.padding_mode))
                conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in changed:
            conv.padding_mode = mode


def seamless_texture(
    prompt: str,
    generator,
    size: int = 512,
    seed: int = 0,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """A (size, size, 3) material texture that tiles without visible seams (e.g. for a floor or a wall)."""
    if size % (8 * generator.latent_factor):
        raise InvalidParameterError(f"Tile size {size} must be a multiple of {8 * generator.latent_factor}.")
    caps = generator.capabilities
    request = GenerationRequest(
        prompts=[f"{prompt}, seamless tileable texture, flat, top-down"],
        steps=steps or generator.default_steps,
        guidance=generator.default_guidance if guidance is None else guidance,
        seed=seed,
    )
    if "depth" in caps:
        request.depth = torch.full((1, 1, size, size), 0.5)  # a flat surface facing the camera
    elif "inpaint" in caps:
        request.init_images = torch.zeros(1, 3, size, size)
        request.inpaint_mask = torch.ones(1, 1, size, size)
    else:
        raise InvalidParameterError(f"{generator.name} can neither generate from depth nor inpaint.")
    with circular_padding(generator.modules()):
        image = sample(generator, request, progress=progress, cancel=cancel)
    return image[0].permute(1, 2, 0).numpy()
