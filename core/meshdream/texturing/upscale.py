"""Texture super-resolution in UV space: tile by tile, chart-aware, with no tile border showing.

Upscalers see the gutter edge-padded from the nearest chart's texels, so the colour between charts (black, or
another chart's leftovers) never bleeds into a chart's border; the upscaled gutter is padded again at the new
size. Tiles overlap and are blended with ramp weights, so an upscaler's own edge effects at a tile border fade out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import trimesh

from ..errors import InvalidParameterError
from ..generators import GeneratorKindError
from ..generators.upscalers import SCALES, Upscaler, load_upscaler
from ..geometry import dilate, uv_maps
from ..geometry.texture import as_float_image, check_texture_size
from ..geometry.uvmaps import require_uvs
from ..progress import CancelToken, ProgressCallback, Reporter

__all__ = ["SCALES", "Upscaler", "upscale_texture"]


def upscale_texture(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    scale: int = 2,
    upscaler: Union[str, Path, Upscaler] = "builtin",
    tile: Optional[int] = None,
    overlap: int = 32,
    prompt: str = "",
    steps: int = 20,
    seed: int = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    device: Union[str, torch.device] = "auto",
) -> np.ndarray:
    """A new (S * scale, S * scale, 3) float32 texture from an (S, S, 3) one, with the same chart layout.

    upscaler: "builtin", the project's own small super-resolution model (x2 and x4, CUDA when available; see
    weights/upscale_model.json); "lanczos", a plain Lanczos resize; an ESRGAN-family model file (.pth /
    .safetensors, any architecture spandrel detects) whose scale equals `scale`; or a local diffusers
    StableDiffusionUpscalePipeline folder (x4), which also takes `prompt`, `steps` and `seed`. tile / overlap: in
    input texels; tile None: 1024 for the built-in model and Lanczos (light: fewer tile borders, less overlap
    recomputed), 256 for model files and the diffusion upscaler (smaller tiles use less memory).
    upscaler may also be one already loaded (generators.upscalers.load_upscaler: what a server or batch worker
    keeps between calls); device: where a spec is loaded ("auto": CUDA, MPS, CPU).
    """
    if scale not in SCALES:
        raise InvalidParameterError(f"Upscale factor {scale!r} is not supported; use scale=2 or scale=4.")
    require_uvs(mesh)
    image = as_float_image(texture, 3, "texture")
    size = image.shape[0]
    if image.shape[:2] != (size, size):
        raise InvalidParameterError(
            f"The texture must be square, got {image.shape[1]} x {image.shape[0]}; pass the (S, S, 3) texture."
        )
    check_texture_size(size)
    if isinstance(upscaler, Upscaler):
        if upscaler.scale != scale:
            raise InvalidParameterError(f"The upscaler {upscaler.name} is loaded for x{upscaler.scale}, not x{scale}.")
        up = upscaler.for_call(prompt, steps, seed)
    else:
        up = load_upscaler(upscaler, scale, device).for_call(prompt, steps, seed)
    tile = tile or up.tile  # the overlap is checked against the tile in use, the upscaler's own by default
    if not 0 <= overlap < tile:
        raise InvalidParameterError(f"Need 0 <= overlap < tile, got overlap={overlap}, tile={tile}.")
    report = Reporter(progress, cancel)

    coverage = uv_maps(mesh, size).coverage
    if not coverage.any():
        raise InvalidParameterError(
            f"No texel of the {size}² texture lies on the mesh's UV layout; is this the mesh's texture?"
        )
    padded = dilate(image, coverage)
    out = np.clip(_tiled(padded, up, min(tile, size), overlap, report), 0.0, 1.0)

    texels, source, _ = uv_maps(mesh, size * scale).gutter
    flat = out.reshape(-1, 3)
    flat[texels] = flat[source]
    return out


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, size) with at least `overlap` shared texels; the last tile ends at the edge."""
    if tile >= size:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _ramp(n: int, fade: int) -> np.ndarray:
    """1-D blend weight over n output texels, a raised cosine over `fade` texels at both ends, never zero."""
    w = np.ones(n, np.float32)
    if fade > 0:
        t = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        edge = 0.5 - 0.5 * np.cos(np.pi * t)
        w[:fade] = edge
        w[n - fade :] = np.minimum(w[n - fade :], edge[::-1])
    return w


def _tiled(image: np.ndarray, up: Upscaler, tile: int, overlap: int, report: Reporter) -> np.ndarray:
    """Upscale overlapping tiles and blend them with ramp weights (weights renormalized per output texel)."""
    size, s = image.shape[0], up.scale
    starts = _starts(size, tile, overlap)
    ramp = _ramp(tile * s, overlap * s if len(starts) > 1 else 0)  # one tile: nothing to blend with
    weight = ramp[:, None] * ramp[None, :]
    acc = np.zeros((size * s, size * s, 3), np.float32)
    total = np.zeros((size * s, size * s, 1), np.float32)
    count = len(starts) ** 2
    for k, (r, c) in enumerate((r, c) for r in starts for c in starts):
        report("upscale", k, count, up.name)
        out = up.run(image[r : r + tile, c : c + tile])
        if out.shape != (tile * s, tile * s, 3):
            raise GeneratorKindError(
                f"Upscaler {up.name} turned a {tile}² tile into {out.shape[:2]}, not {tile * s}²; "
                f"is it really a x{s} model?"
            )
        acc[r * s : (r + tile) * s, c * s : (c + tile) * s] += out * weight[..., None]
        total[r * s : (r + tile) * s, c * s : (c + tile) * s, 0] += weight
    report("upscale", count, count, up.name)
    return acc / total
