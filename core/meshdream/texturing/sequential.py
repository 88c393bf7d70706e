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
from ..geometry import BakeOperator, bake_operator
from ..geometry.texture import bilinear_taps, uv_to_pixel
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


class PaintedSoFar:
    """The texture painted so far, as covered-texel rows on the generator's device (plus one row of zeros for
    lookups that land off the layout), and what each view needs to read it: the bilinear taps of its object
    pixels into those rows and how frontally it sees them. Reading it into a view (keep / refine / generate masks,
    the init image) and baking a view into it are gathers there: no texture round trip through the host."""

    def __init__(self, views: ViewSet, op: BakeOperator, put):
        n, size = len(op.texels), op.size
        row_of = np.full(size * size, n, np.int64)
        row_of[op.texels] = np.arange(n)
        self.color = torch.zeros(n + 1, 3, device=op.device)
        self.weight = torch.zeros(n + 1, device=op.device)
        self.best_cos = torch.zeros(n + 1, device=op.device)
        self.taps, self.tap_weight, self.pixels, self.cos = [], [], [], []
        for cam, maps in zip(views.cameras, views.maps):
            taps, weight = bilinear_taps(uv_to_pixel(maps.uv[maps.mask], size), size, size)
            to_cam = cam.position - _pixel_points(cam, maps)
            cos = np.einsum("nc,nc->n", maps.normal[maps.mask], to_cam / np.linalg.norm(to_cam, axis=1, keepdims=True))
            self.taps.append(put(row_of[taps]))
            self.tap_weight.append(put(weight, torch.float32))
            self.pixels.append(put(np.flatnonzero(maps.mask.ravel())))
            self.cos.append(put(cos, torch.float32))

    @property
    def empty(self) -> bool:
        return not bool((self.weight > 0).any())

    def read(self, k: int, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inpaint mask (H*W,), init image (H*W, 3)) of view k: 1 generate, 0 keep, REFINE_MASK refine; the
        background and unseen surface are free."""
        taps, w, pixels = self.taps[k], self.tap_weight[k], self.pixels[k]
        prev_cos = (self.best_cos[taps] * w).sum(1)
        mask = torch.ones(shape[0] * shape[1], device=taps.device)
        mask[pixels] = torch.where(
            prev_cos <= 0, 1.0, torch.where(prev_cos >= KEEP_RATIO * self.cos[k], 0.0, REFINE_MASK)
        )
        init = torch.ones(shape[0] * shape[1], 3, device=taps.device)
        init[pixels] = (self.color[taps] * w[..., None]).sum(1)
        return mask, init

    def add(self, op: BakeOperator, pixels: torch.Tensor) -> None:
        """Blend one view's bake (`op` selected to that view and the pixels it may paint) into the texture."""
        n = len(op.texels)
        new, w_new = op.gather(pixels), op.texel_weight
        total = self.weight[:n] + w_new
        blended = (self.color[:n] * self.weight[:n, None] + new * w_new[:, None]) / total.clamp_min(1e-30)[:, None]
        self.color[:n] = torch.where(w_new[:, None] > 0, blended, self.color[:n])
        self.weight[:n] = total
        self.best_cos[:n] = torch.maximum(self.best_cos[:n], op.texel_best_cos)


def texture_sequential(mesh: trimesh.Trimesh, views: ViewSet, generator, s: Settings, timer: Timer) -> TextureResult:
    generated: dict[int, tuple] = {}
    with timer("paint"):  # one projection of all views serves every per-view bake and the final bake
        op = bake_operator(
            mesh, views.cameras, s.texture_size, power=s.bake_power, maps=views.maps, device=generator.device
        )
        order = waves(op, generator.max_batch)
        painted = PaintedSoFar(views, op, generator.put)
    for w, wave in enumerate(order):
        with timer("paint"):
            shape = views.maps[wave[0]].mask.shape
            first = painted.empty
            masks, inits = zip(*(painted.read(k, shape) for k in wave))
        request = GenerationRequest(
            prompts=[views.prompts[k] for k in wave],
            negative_prompt=s.negative_prompt,
            depth=views.depth[wave],
            normal=None if views.normal is None else views.normal[wave],
            init_images=None if first else torch.stack(inits).view(len(wave), *shape, 3).permute(0, 3, 1, 2),
            inpaint_mask=None if first else torch.stack(masks).view(len(wave), 1, *shape),
            steps=s.steps,
            guidance=s.guidance,
            seed=s.seed + w,
            reference_image=s.reference_image,
        )
        with timer("denoise"):
            images = sample(generator, request, cancel=s.cancel, progress=_offset(s.progress, w, len(order)))
        with timer("paint"):
            for k, mask, image in zip(wave, masks, images):
                generated[k] = (views.cameras[k], to_images(image[None])[0])
                pixels = generator.put(image.permute(1, 2, 0).reshape(-1, image.shape[0]), torch.float32)
                painted.add(op.select(k, (mask > 0).float()), pixels)  # the bake reads object pixels only
    generated_in_order = [generated[k] for k in range(len(views.cameras))]
    texture, result = final_bake(mesh, generated_in_order, views, s, timer, generator, op=op)
    return TextureResult(texture, result.weight, generated_in_order, strategy="sequential")


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
