"""Texture super-resolution in UV space: tile by tile, chart-aware, with no tile border showing.

Upscalers see the texture's own gutter where it has one (a bake's padding: the texels at a chart's rim whose
centre falls just outside it still hold part of the chart; replacing them with copies of the nearest covered texel
cost up to 3 dB inside small charts, `bench upscale`'s charts_x2). Where the gutter is empty (the most common
uncovered colour, e.g. black) it is edge-padded from the nearest chart texel, so that colour never bleeds into a
chart's border; those texels are padded again at the new size. Tiles overlap and are blended with ramp weights,
so an upscaler's own edge effects at a tile border fade out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

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
from .materials import for_maps

__all__ = ["SCALES", "Upscaler", "upscale_texture"]

# An uncovered colour counts as an empty gutter's fill when it is the most common one and holds this share of the
# uncovered texels: a fill beyond a padded band can be a small share (8% on a bunny atlas with 2 texels of padding),
# and taking a padded gutter's flat colour for a fill is harmless (re-padding gives about that colour back).
EMPTY_SHARE = 0.01


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
):
    """A new (S * scale, S * scale, 3) float32 texture from an (S, S, 3) one, with the same chart layout.

    texture may also be a dict of PBR maps (TextureResult.maps) or a TextureResult with maps: every map is
    upscaled by the same upscaler (roughness and metallic as two channels of one image, normals decoded,
    renormalized and re-encoded) and the same kind comes back.

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
    if isinstance(texture, Mapping) or hasattr(texture, "maps"):
        return for_maps(
            texture,
            lambda image: upscale_texture(
                mesh, image, scale, upscaler, tile, overlap, prompt, steps, seed, progress, cancel, device
            ),
        )
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
    empty = empty_gutter(image, coverage)
    padded = dilate(image, coverage, where=empty)
    out = np.clip(_tiled(padded, up, min(tile, size), overlap, report), 0.0, 1.0)

    texels, source, _ = uv_maps(mesh, size * scale).gutter
    repad = empty.repeat(scale, 0).repeat(scale, 1).ravel()[texels]  # the texture's own gutter stays upscaled
    flat = out.reshape(-1, 3)
    flat[texels[repad]] = flat[source[repad]]
    return out


def empty_gutter(image: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """(S, S) bool: uncovered texels holding the empty gutter's fill, i.e. the most common uncovered colour (to
    8 bits) when it holds EMPTY_SHARE of them. A padded or painted gutter seldom has one; where it does (a flat
    chart's padding), re-padding those texels gives about the same colour."""
    gutter = np.flatnonzero(~coverage)
    empty = np.zeros(coverage.shape, bool)
    if not len(gutter):
        return empty
    q = np.round(np.clip(image.reshape(-1, 3)[gutter], 0.0, 1.0) * 255).astype(np.int32)
    key = (q[:, 0] << 16) | (q[:, 1] << 8) | q[:, 2]
    values, counts = np.unique(key, return_counts=True)
    if counts.max() >= EMPTY_SHARE * len(key):
        empty.ravel()[gutter] = key == values[counts.argmax()]
    return empty


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
