"""Synchronized multi-view denoising: all views denoise together and agree by construction.

At every step during the first `sync_fraction` of the schedule, each view's prediction of the clean image (in
the model's latent space) is baked into one shared UV texture at latent resolution, unseen texels are filled from
the nearest seen ones, and the texture is rendered back into every view, replacing the object pixels of the
prediction. The bake's view-angle exponent ramps up over the steps: early steps average broadly, later ones trust
the most frontal view. After the synchronized phase the views finish on their own and the final RGB images are
baked at full resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from ..generators import GenerationRequest, sample
from ..geometry import bake_operator, dilate, render, sample_texture
from .common import Settings, Timer, final_bake
from .result import TextureResult
from .views import ViewSet, to_images


def latent_texture_size(view_latent: int) -> int:
    """Power of two with about two latent texels per latent view pixel across the layout (view pixels smaller
    than texels keep the shared texture fully observed)."""
    return int(2 ** np.ceil(np.log2(max(view_latent, 8) * 1.5)))


def texture_sync(
    mesh: trimesh.Trimesh,
    views: ViewSet,
    generator,
    s: Settings,
    timer: Timer,
    sync_fraction: float = 0.8,
    max_power: float = 6.0,
) -> TextureResult:
    f = generator.latent_factor
    with timer("geometry"):
        cams = [c.scaled(f) for c in views.cameras]
        lmaps = [render(mesh, c, require_visible=False) for c in cams]
        size = latent_texture_size(cams[0].width)
        powers = (0.0, max_power / 3, 2 * max_power / 3, max_power)
        operators = {}
    sync_steps = int(round(sync_fraction * s.steps))

    def hook(i: int, total: int, x0: torch.Tensor) -> torch.Tensor:
        if i >= min(sync_steps, total - 1):
            return x0
        with timer("geometry"):
            p = powers[min(int(len(powers) * i / max(sync_steps, 1)), len(powers) - 1)]
            if p not in operators:
                operators[p] = bake_operator(mesh, cams, size, power=p)
            baked = operators[p].apply(to_images(x0), padding=0)
            shared = dilate(baked.texture, baked.seen)
            out = x0.clone()
            for b, m in enumerate(lmaps):
                mask = torch.from_numpy(m.mask)
                values = sample_texture(shared, m.uv[m.mask])  # (N, C)
                out[b][:, mask] = torch.from_numpy(values.T.copy()).to(out.dtype)
        return out

    request = GenerationRequest(
        prompts=views.prompts,
        negative_prompt=s.negative_prompt,
        depth=views.depth,
        normal=views.normal,
        steps=s.steps,
        guidance=s.guidance,
        seed=s.seed,
        reference_image=s.reference_image,
    )
    with timer("model"):
        images = sample(generator, request, hook=hook, progress=s.progress, cancel=s.cancel)
    rgb = to_images(images)
    generated = list(zip(views.cameras, rgb))
    texture, result = final_bake(mesh, [(c, img, m.mask) for (c, img), m in zip(generated, views.maps)], s, timer)
    return TextureResult(texture, result.weight, generated, strategy="sync")
