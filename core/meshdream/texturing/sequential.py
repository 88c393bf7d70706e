"""Sequential texturing: views one after another, each respecting what earlier views painted.

For every pixel of a new view, the texture so far says how frontally its texel was already seen. Pixels seen
before from a better (or similar) angle are kept, pixels seen from a clearly worse angle are refined (re-noised
for the second half of the steps), unseen pixels are generated. The view is then baked in with cos^p weights
wherever it was allowed to paint.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from ..generators import GenerationRequest, sample
from ..geometry import bake, render_texture, sample_texture
from .common import Settings, Timer, final_bake
from .result import TextureResult
from .views import ViewSet, to_images

KEEP_RATIO = 0.9  # keep a texel if it was seen at >= 90% of this view's cosine
REFINE_MASK = 0.5  # inpaint-mask value for refined pixels: free for the second half of the steps


def texture_sequential(mesh: trimesh.Trimesh, views: ViewSet, generator, s: Settings, timer: Timer) -> TextureResult:
    size = s.texture_size
    acc = np.zeros((size, size, 3), np.float32)
    acc_weight = np.zeros((size, size), np.float32)
    best_cos = np.zeros((size, size), np.float32)
    generated = []
    n = len(views.cameras)
    for k, (cam, maps) in enumerate(zip(views.cameras, views.maps)):
        with timer("geometry"):
            painted = acc_weight > 0
            mask = np.zeros(maps.mask.shape, np.float32)
            if painted.any():
                current = np.where(painted[..., None], acc, 0.0)
                prev_cos = sample_texture(best_cos[..., None], maps.uv[maps.mask])[:, 0]
                to_cam = cam.position - _pixel_points(cam, maps)
                cos = np.einsum(
                    "nc,nc->n", maps.normal[maps.mask], to_cam / np.linalg.norm(to_cam, axis=1, keepdims=True)
                )
                state = np.where(prev_cos <= 0, 1.0, np.where(prev_cos >= KEEP_RATIO * cos, 0.0, REFINE_MASK))
                mask[maps.mask] = state
                init = render_texture(mesh, current, cam, background=1.0, maps=maps)
            else:
                mask[maps.mask] = 1.0
                init = np.ones(maps.mask.shape + (3,), np.float32)
            mask[~maps.mask] = 1.0  # background is free
        request = GenerationRequest(
            prompts=[views.prompts[k]],
            negative_prompt=s.negative_prompt,
            depth=views.depth[k : k + 1],
            normal=views.normal[k : k + 1],
            init_images=torch.from_numpy(init).permute(2, 0, 1)[None] if painted.any() else None,
            inpaint_mask=torch.from_numpy(mask)[None, None] if painted.any() else None,
            steps=s.steps,
            guidance=s.guidance,
            seed=s.seed + k,
            reference_image=s.reference_image,
        )
        with timer("model"):
            image = to_images(sample(generator, request, cancel=s.cancel, progress=_offset(s.progress, k, n)))[0]
        generated.append((cam, image))
        with timer("geometry"):
            paint = maps.mask & (mask > 0)
            r = bake(mesh, [(cam, image, paint)], size, power=s.bake_power, padding=0)
            w = r.weight
            acc = np.where(
                w[..., None] > 0,
                (acc * acc_weight[..., None] + r.texture * w[..., None]) / np.maximum(acc_weight + w, 1e-12)[..., None],
                acc,
            )
            acc_weight += w
            best_cos = np.maximum(best_cos, r.best_cos)
    texture, result = final_bake(mesh, [(c, img, m.mask) for (c, img), m in zip(generated, views.maps)], s, timer)
    return TextureResult(texture, result.weight, generated, strategy="sequential")


def _pixel_points(cam, maps) -> np.ndarray:
    """World positions of the object pixels of a view (from depth along each pixel's ray)."""
    dirs = cam.pixel_directions()[maps.mask.ravel()] @ cam.rotation
    return cam.position + dirs * maps.depth[maps.mask][:, None]


def _offset(progress, k: int, n: int):
    """Report view k's denoising steps as part of all n views' steps."""
    if progress is None:
        return None
    from ..progress import Progress

    def report(p: Progress) -> None:
        progress(Progress("denoise", k * p.total + p.step, n * p.total, f"view {k + 1} of {n}"))

    return report
