"""Sequential texturing: views one after another, each respecting what earlier views painted.

For every pixel of a new view, the texture so far says how frontally its texel was already seen. Pixels seen
before from a better (or similar) angle are kept, pixels seen from a clearly worse angle are refined (re-noised
for the second half of the steps), unseen pixels are generated. The view is then baked in with cos^p weights
wherever it was allowed to paint.

Views that see (almost) none of the same surface cannot affect each other, so they are denoised together in one
batch ("waves": e.g. front and back, then left and right): the model runs a few larger batches instead of one
small batch per view, which is what keeps a GPU busy.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import trimesh

from ..generators import GenerationRequest, sample
from ..geometry import BakeOperator, bake_operator, render_texture, sample_texture
from ..progress import Progress
from .common import Settings, Timer, final_bake
from .result import TextureResult
from .views import ViewSet, to_images

KEEP_RATIO = 0.9  # keep a texel if it was seen at >= 90% of this view's cosine
REFINE_MASK = 0.5  # inpaint-mask value for refined pixels: free for the second half of the steps
# Two views share a wave only if at most this fraction of the smaller one's surface (seen at cos >= SHARED_COS, i.e.
# within ~70 degrees of its axis) is seen by the other as well.
MAX_SHARED = 0.02
SHARED_COS = 0.35


def waves(op: BakeOperator, max_batch: int) -> list[list[int]]:
    """Views grouped into batches of views that do not overlap, in the given order as far as that allows: each
    wave takes, in order, every remaining view that overlaps none already in it."""
    n_views = len(op.shapes)
    rows, view = op.rows.cpu().numpy(), op.view.cpu().numpy()
    frontal = (op.cos >= SHARED_COS).cpu().numpy() & (op.support > 0).cpu().numpy()
    sees = np.zeros((len(op.texels), n_views), np.float32)
    sees[rows[frontal], view[frontal]] = 1.0
    shared = sees.T @ sees  # (V, V) texels seen by both
    size = np.diag(shared)
    apart = shared <= MAX_SHARED * np.maximum(np.minimum(size[:, None], size[None, :]), 1)
    remaining, out = list(range(n_views)), []
    while remaining:
        wave: list[int] = []
        for k in remaining:
            if len(wave) < max_batch and all(apart[k, j] for j in wave):
                wave.append(k)
        out.append(wave)
        remaining = [k for k in remaining if k not in wave]
    return out


def texture_sequential(mesh: trimesh.Trimesh, views: ViewSet, generator, s: Settings, timer: Timer) -> TextureResult:
    size = s.texture_size
    acc = np.zeros((size, size, 3), np.float32)
    acc_weight = np.zeros((size, size), np.float32)
    best_cos = np.zeros((size, size), np.float32)
    generated: dict[int, tuple] = {}
    with timer("paint"):  # one projection of all views serves every per-view bake and the final bake
        op = bake_operator(mesh, views.cameras, size, power=s.bake_power, maps=views.maps, device=generator.device)
        order = waves(op, generator.max_batch)
    for w, wave in enumerate(order):
        with timer("paint"):
            painted = acc_weight > 0
            masks, inits = zip(*(_paint_state(mesh, views, k, acc, painted, best_cos) for k in wave))
        request = GenerationRequest(
            prompts=[views.prompts[k] for k in wave],
            negative_prompt=s.negative_prompt,
            depth=views.depth[wave],
            normal=None if views.normal is None else views.normal[wave],
            init_images=torch.from_numpy(np.stack(inits)).permute(0, 3, 1, 2) if painted.any() else None,
            inpaint_mask=torch.from_numpy(np.stack(masks))[:, None] if painted.any() else None,
            steps=s.steps,
            guidance=s.guidance,
            seed=s.seed + w,
            reference_image=s.reference_image,
        )
        with timer("denoise"):
            images = to_images(sample(generator, request, cancel=s.cancel, progress=_offset(s.progress, w, len(order))))
        with timer("paint"):
            for k, mask, image in zip(wave, masks, images):
                generated[k] = (views.cameras[k], image)
                r = op.select(k, views.maps[k].mask & (mask > 0)).apply([image], padding=0)
                w_new = r.weight
                acc = np.where(
                    w_new[..., None] > 0,
                    (acc * acc_weight[..., None] + r.texture * w_new[..., None])
                    / np.maximum(acc_weight + w_new, 1e-12)[..., None],
                    acc,
                )
                acc_weight += w_new
                best_cos = np.maximum(best_cos, r.best_cos)
    generated_in_order = [generated[k] for k in range(len(views.cameras))]
    texture, result = final_bake(mesh, generated_in_order, views, s, timer, generator, op=op)
    return TextureResult(texture, result.weight, generated_in_order, strategy="sequential")


def _paint_state(mesh, views: ViewSet, k: int, acc, painted, best_cos) -> tuple[np.ndarray, np.ndarray]:
    """(inpaint mask, init image) of view k against the texture so far: 1 generate, 0 keep, REFINE_MASK refine."""
    cam, maps = views.cameras[k], views.maps[k]
    mask = np.ones(maps.mask.shape, np.float32)  # background and unseen surface are free
    init = np.ones(maps.mask.shape + (3,), np.float32)
    if painted.any():
        prev_cos = sample_texture(best_cos[..., None], maps.uv[maps.mask])[:, 0]
        to_cam = cam.position - _pixel_points(cam, maps)
        cos = np.einsum("nc,nc->n", maps.normal[maps.mask], to_cam / np.linalg.norm(to_cam, axis=1, keepdims=True))
        mask[maps.mask] = np.where(prev_cos <= 0, 1.0, np.where(prev_cos >= KEEP_RATIO * cos, 0.0, REFINE_MASK))
        init = render_texture(mesh, np.where(painted[..., None], acc, 0.0), cam, background=1.0, maps=maps)
    return mask, init


def _pixel_points(cam, maps) -> np.ndarray:
    """World positions of the object pixels of a view (from depth along each pixel's ray)."""
    dirs = cam.pixel_directions()[maps.mask.ravel()] @ cam.rotation
    return cam.position + dirs * maps.depth[maps.mask][:, None]


def _offset(progress, w: int, n: int):
    """Report wave w's denoising steps as part of all n waves' steps."""
    if progress is None:
        return None

    def report(p: Progress) -> None:
        progress(replace(p, step=w * p.total + p.step, total=n * p.total, message=f"views batch {w + 1} of {n}"))

    return report
