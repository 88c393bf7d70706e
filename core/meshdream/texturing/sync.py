"""Synchronized multi-view denoising: all views denoise together and agree by construction.

At every step during the first `sync_fraction` of the schedule, each view's prediction of the clean image (in
the model's latent space) is baked into one shared UV texture at latent resolution, unseen texels are filled from
the nearest seen ones, and the texture is rendered back into every view, replacing the object pixels of the
prediction. The bake's view-angle exponent ramps up over the steps: early steps average broadly, later ones trust
the most frontal view. After the synchronized phase the views finish on their own and the final RGB images are
baked at full resolution.

Everything a step needs is built once, before the loop, on the generator's device (`SharedTexture`), so a step
is a sparse product and two gathers there: no host round trip, no re-projection.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from scipy import ndimage

from ..generators import GenerationRequest, sample
from ..geometry import Camera, ViewMaps, bake_operator, render_views
from ..geometry.texture import bilinear_taps, uv_to_pixel
from .common import Settings, Timer, final_bake, prepare_final_bake
from .result import TextureResult
from .views import ViewSet, to_images


def latent_texture_size(view_latent: int) -> int:
    """Power of two with about two latent texels per latent view pixel across the layout (view pixels smaller
    than texels keep the shared texture fully observed)."""
    return int(2 ** np.ceil(np.log2(max(view_latent, 8) * 1.5)))


class SharedTexture:
    """One synchronization step for fixed views: bake (B, C, h, w) predictions into a (size²) UV texture, fill
    texels no view sees from the nearest seen one, and render the texture back into the views' object pixels."""

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        cameras: list[Camera],
        maps: list[ViewMaps],
        size: int,
        generator,
        powers: tuple[float, ...] = (0.0,),
    ):
        self.op = bake_operator(mesh, cameras, size, power=0.0, maps=maps, device=generator.device)
        # Every view-angle power's matrix is built here: building one reads sizes back from the device, which
        # inside the loop would stall the host until the queued denoising caught up.
        self._powers = {p: self.op.reweighted(p).built() for p in powers}
        seen = np.zeros(size * size, bool)
        seen[self.op.texels[self.op.weight > 0]] = True
        # Rows of the baked texel list that each texel of the full grid copies (itself if seen, else the nearest
        # seen texel: a Voronoi fill), so the render-back never samples a hole.
        _, (ri, ci) = ndimage.distance_transform_edt(~seen.reshape(size, size), return_indices=True)
        row_of = np.zeros(size * size, np.int64)
        row_of[self.op.texels] = np.arange(len(self.op.texels))
        source = row_of[(ri * size + ci).ravel()]
        offsets = np.cumsum([0] + [m.mask.size for m in maps[:-1]])
        pixels = np.concatenate([np.flatnonzero(m.mask.ravel()) + o for m, o in zip(maps, offsets)])
        taps, weight = bilinear_taps(uv_to_pixel(np.concatenate([m.uv[m.mask] for m in maps]), size), size, size)
        self.active = bool(seen.any())
        self.pixels = generator.put(pixels)  # (P,) object pixels of all views, stacked view after view
        self.source = generator.put(source[taps])  # (P, 4) baked texel rows of each pixel's bilinear taps
        self.weight = generator.put(weight, torch.float32)  # (P, 4)

    def __call__(self, x0: torch.Tensor, power: float) -> torch.Tensor:
        if not self.active:
            return x0
        b, c, h, w = x0.shape
        flat = x0.permute(0, 2, 3, 1).reshape(-1, c)
        texels = self._powers[power].gather(flat)  # (N, C)
        values = (texels[self.source] * self.weight[..., None]).sum(1)
        out = flat.clone()
        out[self.pixels] = values
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


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
    with timer("sync"):
        cams = [c.scaled(f) for c in views.cameras]
        lmaps = render_views(mesh, cams, False, generator.device)
        powers = (0.0, max_power / 3, 2 * max_power / 3, max_power)
        size = latent_texture_size(cams[0].width) * s.atlas_grid
        shared = SharedTexture(mesh, cams, lmaps, size, generator, powers)

    def hook(i: int, total: int, x0: torch.Tensor) -> torch.Tensor:
        # Over the steps that run (img2img runs only the last `strength` of the schedule), so the ramp completes.
        sync_steps = int(round(sync_fraction * total))
        if i >= min(sync_steps, total - 1):
            return x0
        with timer("sync"):
            return shared(x0, powers[min(int(len(powers) * i / max(sync_steps, 1)), len(powers) - 1)])

    request = GenerationRequest(
        prompts=views.prompts,
        negative_prompt=s.negative_prompt,
        depth=views.depth,
        normal=views.normal,
        steps=s.steps,
        guidance=s.guidance,
        seed=s.seed,
        reference_image=s.reference_image,
        init_images=s.init_images,
        strength=s.strength if s.init_images is not None else 1.0,
    )
    with timer("bake"):
        final = prepare_final_bake(mesh, views, s, generator)
    with timer("denoise"):
        if request.init_images is not None and request.strength == 0:
            images = request.init_images.float().cpu()  # no denoising steps: the start views are the result
        else:
            images = sample(generator, request, hook=hook, progress=s.progress, cancel=s.cancel)
    generated = list(zip(views.cameras, to_images(images)))
    texture, result = final_bake(mesh, generated, views, s, timer, generator, op=final)
    return TextureResult(texture, result.weight, generated, strategy="sync")
