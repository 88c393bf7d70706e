"""Refine a texture at a higher resolution than the model's native size: img2img over overlapping tiles.

Each view is re-rendered with the current texture at `scale` times its resolution, cut into tiles of the model's
native size (with overlap), refined by depth-conditioned img2img at low strength (detail, not new content), and
the tiles are feathered back together. The refined views are baked into a larger texture; texels they miss keep
the upsampled old texture.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from ..generators import GenerationRequest, sample
from ..geometry import bake, render, render_texture
from ..images import depth_to_image
from .common import Settings, Timer
from .result import TextureResult
from .views import to_images


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _feather(tile: int, overlap: int) -> np.ndarray:
    ramp = np.minimum(1.0, (np.arange(tile) + 0.5) / max(overlap, 1))
    ramp = np.minimum(ramp, ramp[::-1])
    return np.outer(ramp, ramp).astype(np.float32)


def refine(
    mesh: trimesh.Trimesh,
    result: TextureResult,
    generator,
    s: Settings,
    timer: Timer,
    scale: int = 2,
    strength: float = 0.35,
) -> TextureResult:
    tile = generator.native_resolution
    overlap = max(tile // 8, 8)
    size = s.texture_size * scale
    with timer("refine"):
        cams = [c.resized(scale) for c, _ in result.views]
        maps = [render(mesh, c) for c in cams]
        inits = [render_texture(mesh, result.texture, c, background=1.0, maps=m) for c, m in zip(cams, maps)]
        depths = [depth_to_image(m.depth) for m in maps]
    crops, where = [], []
    for v, cam in enumerate(cams):
        for y in _tile_starts(cam.height, tile, overlap):
            for x in _tile_starts(cam.width, tile, overlap):
                crops.append((inits[v][y : y + tile, x : x + tile], depths[v][y : y + tile, x : x + tile]))
                where.append((v, y, x))
    prompts = [s.prompt] * len(crops)
    request = GenerationRequest(
        prompts=prompts,
        negative_prompt=s.negative_prompt,
        init_images=torch.from_numpy(np.stack([c[0] for c in crops])).permute(0, 3, 1, 2),
        depth=torch.from_numpy(np.stack([c[1] for c in crops]))[:, None],
        strength=strength,
        steps=s.steps,
        guidance=s.guidance,
        seed=s.seed,
    )
    with timer("denoise"):
        tiles = to_images(sample(generator, request, progress=s.progress, cancel=s.cancel))
    with timer("refine"):
        acc = [np.zeros_like(i) for i in inits]
        weight = [np.zeros(i.shape[:2], np.float32) for i in inits]
        for (v, y, x), img in zip(where, tiles):
            th, tw = img.shape[:2]
            f = _feather(tile, overlap)[:th, :tw]
            acc[v][y : y + th, x : x + tw] += img * f[..., None]
            weight[v][y : y + th, x : x + tw] += f
        views = [(c, a / np.maximum(w, 1e-8)[..., None]) for c, a, w in zip(cams, acc, weight)]
        baked = bake(mesh, [(c, img, m.mask) for (c, img), m in zip(views, maps)], size, power=s.bake_power, padding=0)
        up = np.asarray(
            torch.nn.functional.interpolate(
                torch.from_numpy(result.texture).permute(2, 0, 1)[None],
                size=(size, size),
                mode="bilinear",
                align_corners=False,
            )[0].permute(1, 2, 0)
        )
        texture = np.where(baked.seen[..., None], baked.texture, up).astype(np.float32)
    return TextureResult(texture, baked.weight, views, strategy=result.strategy + "+refine")
