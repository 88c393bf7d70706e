"""Texture super-resolution in UV space: tile by tile, chart-aware, with no tile border showing.

Upscalers see the texture's own gutter where it has one (a bake's padding: the texels at a chart's rim whose
centre falls just outside it still hold part of the chart; replacing them with copies of the nearest covered texel
cost up to 3 dB inside small charts, `bench upscale`'s charts_x2). Where the gutter is empty (the most common
uncovered colour, e.g. black) it is edge-padded from the nearest chart texel, so that colour never bleeds into a
chart's border; those texels are padded again at the new size. Tiles overlap and are blended with ramp weights,
so an upscaler's own edge effects at a tile border fade out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import trimesh

from ..errors import InvalidParameterError
from ..generators import GeneratorKindError, ModelNotFoundError
from ..geometry import dilate, uv_maps
from ..geometry.texture import as_float_image, check_texture_size
from ..geometry.uvmaps import require_uvs
from ..progress import CancelToken, ProgressCallback, Reporter

SCALES = (2, 4)
# An uncovered colour counts as an empty gutter's fill when it is the most common one and holds this share of the
# uncovered texels: a fill beyond a padded band can be a small share (8% on a bunny atlas with 2 texels of padding),
# and taking a padded gutter's flat colour for a fill is harmless (re-padding gives about that colour back).
EMPTY_SHARE = 0.01
MODEL_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")

# (h, w, 3) float32 in [0, 1] -> (h * scale, w * scale, 3) float32
TileFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Upscaler:
    """A resolved `upscaler=` spec: what upscales one tile, and a name for messages."""

    name: str
    scale: int
    run: TileFn
    tile: int = 256  # default tile side in input texels: big networks need small tiles on 6-8 GB cards


def upscale_texture(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    scale: int = 2,
    upscaler: str | Path = "builtin",
    tile: Optional[int] = None,
    overlap: int = 32,
    prompt: str = "",
    steps: int = 20,
    seed: int = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """A new (S * scale, S * scale, 3) float32 texture from an (S, S, 3) one, with the same chart layout.

    upscaler: "builtin", the project's own small super-resolution model (x2 and x4, CUDA when available; see
    weights/upscale_model.json); "lanczos", a plain Lanczos resize; an ESRGAN-family model file (.pth /
    .safetensors, any architecture spandrel detects) whose scale equals `scale`; or a local diffusers
    StableDiffusionUpscalePipeline folder (x4), which also takes `prompt`, `steps` and `seed`. tile / overlap: in
    input texels; tile None: 1024 for the built-in model and Lanczos (light: fewer tile borders, less overlap
    recomputed), 256 for model files and the diffusion upscaler (smaller tiles use less memory).
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
    up = resolve_upscaler(upscaler, scale, prompt, steps, seed)
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


def resolve_upscaler(spec: str | Path, scale: int, prompt: str = "", steps: int = 20, seed: int = 0) -> Upscaler:
    """The tile function for `spec`, checked against `scale` before any texel is touched."""
    if isinstance(spec, str) and spec.lower() == "builtin":
        from ..generators.builtin.upscaler import load_builtin_upscaler

        return Upscaler("builtin", scale, load_builtin_upscaler(scale), tile=1024)
    if isinstance(spec, str) and spec.lower() == "lanczos":
        return Upscaler("lanczos", scale, lambda t: _lanczos(t, scale), tile=1024)
    path = Path(spec).expanduser()
    if path.suffix.lower() in MODEL_SUFFIXES:
        if not path.is_file():
            raise ModelNotFoundError(f"Upscaler model file {str(path)!r} does not exist; check the path.")
        return _spandrel_upscaler(path, scale)
    if path.is_dir():
        return _diffusers_upscaler(path, scale, prompt, steps, seed)
    raise InvalidParameterError(
        f"Unknown upscaler {str(spec)!r}: use 'builtin', 'lanczos', the path of an ESRGAN-family model file "
        f"({', '.join(MODEL_SUFFIXES)}) or a local StableDiffusionUpscalePipeline folder."
    )


def _lanczos(tile: np.ndarray, scale: int) -> np.ndarray:
    from PIL import Image

    h, w = tile.shape[:2]
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(tile[..., c])).resize((w * scale, h * scale), Image.LANCZOS))
        for c in range(tile.shape[2])
    ]
    return np.stack(channels, axis=-1)


def _spandrel_upscaler(path: Path, scale: int) -> Upscaler:
    try:
        import spandrel
    except ImportError as e:
        raise ModelNotFoundError(
            f"Loading upscaler models needs spandrel ({e}); install it with: pip install 'meshdream[upscale]'."
        ) from e
    import torch

    try:
        model = spandrel.ModelLoader().load_from_file(path)
    except spandrel.UnsupportedModelError as e:
        raise GeneratorKindError(
            f"{path.name} is not a model architecture spandrel knows; pass an ESRGAN-family upscaler (.pth)."
        ) from e
    arch = model.architecture.name
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "SR":
        raise GeneratorKindError(
            f"{path.name} is a {arch} {model.purpose} model, not a super-resolution (SR) model; "
            "pass an upscaler such as ESRGAN or Real-ESRGAN."
        )
    if model.scale != scale:
        raise GeneratorKindError(
            f"{path.name} ({arch}) upscales x{model.scale}, but scale={scale} was asked; "
            f"pass scale={model.scale} or a x{scale} model."
        )
    if model.input_channels != 3 or model.output_channels != 3:
        raise GeneratorKindError(
            f"{path.name} ({arch}) takes {model.input_channels} and gives {model.output_channels} channels; "
            "texture upscaling needs an RGB (3-channel) model."
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()

    @torch.inference_mode()
    def run(tile: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))[None].to(device)
        return model(x)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    return Upscaler(f"{arch} ({path.name})", scale, run)


def _diffusers_upscaler(folder: Path, scale: int, prompt: str, steps: int, seed: int) -> Upscaler:
    import json

    import torch

    index = folder / "model_index.json"
    kind = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    if kind != "StableDiffusionUpscalePipeline":
        raise GeneratorKindError(
            f"{folder} is {'a ' + kind if kind else 'not a diffusers pipeline'}, not a StableDiffusionUpscalePipeline; "
            "pass e.g. a local copy of stabilityai/stable-diffusion-x4-upscaler, or a .pth upscaler file."
        )
    if steps < 1:
        raise InvalidParameterError(f"steps must be at least 1, got {steps}.")
    from diffusers import StableDiffusionUpscalePipeline

    cuda = torch.cuda.is_available()
    pipe = StableDiffusionUpscalePipeline.from_pretrained(
        folder, local_files_only=True, torch_dtype=torch.float16 if cuda else torch.float32
    )
    if pipe.vae_scale_factor != scale:
        raise GeneratorKindError(
            f"{folder.name} (StableDiffusionUpscalePipeline) upscales x{pipe.vae_scale_factor}, but scale={scale} "
            f"was asked; pass scale={pipe.vae_scale_factor}."
        )
    device = "cuda" if cuda else "cpu"
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def run(tile: np.ndarray) -> np.ndarray:
        # The same seed on every tile: overlapping tiles then start from alike noise and blend more quietly.
        generator = torch.Generator(device).manual_seed(seed)
        out = pipe(prompt, tile[None], num_inference_steps=steps, generator=generator, output_type="np")
        return np.asarray(out.images[0], np.float32)

    return Upscaler(f"diffusion ({folder.name})", scale, run)


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
