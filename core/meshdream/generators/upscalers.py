"""Upscaler models for upscale_texture, loaded like texture generators: by a spec, onto a device, once.

A loaded `Upscaler` is kept by whoever upscales many textures (the server's model cache, a batch worker) and
handed to `upscale_texture(upscaler=...)`, which otherwise loads its spec for the one call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..tensors import pick_device
from .base import GeneratorKindError, ModelNotFoundError

SCALES = (2, 4)
MODEL_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")

# (h, w, 3) float32 in [0, 1] -> (h * scale, w * scale, 3) float32
TileFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Upscaler:
    """A loaded upscaler: what upscales one tile, and a name for messages. `configure` (the diffusion upscaler
    only) gives the tile function for a call's prompt, steps and seed, from the one loaded pipeline."""

    name: str
    scale: int
    run: TileFn
    tile: int = 256  # default tile side in input texels: big networks need small tiles on 6-8 GB cards
    configure: Optional[Callable[[str, int, int], TileFn]] = None

    def for_call(self, prompt: str = "", steps: int = 20, seed: int = 0) -> "Upscaler":
        """This upscaler with a call's prompt / steps / seed (only a diffusion upscaler reads them)."""
        if self.configure is None:
            return self
        if steps < 1:
            raise InvalidParameterError(f"steps must be at least 1, got {steps}.")
        return replace(self, run=self.configure(prompt, steps, seed))


def load_upscaler(spec: str | Path, scale: int, device: str | torch.device = "auto") -> Upscaler:
    """Load an upscaler for `scale` (checked before any texel is touched) on `device` ("auto": CUDA, MPS, CPU).

    spec: "builtin" (MeshDream's small x2 / x4 model), "lanczos" (a plain resize), an ESRGAN-family model file
    (.pth / .safetensors, any architecture spandrel detects: pip install 'meshdream[upscale]') or a local
    diffusers StableDiffusionUpscalePipeline folder (x4).
    """
    if scale not in SCALES:
        raise InvalidParameterError(f"Upscale factor {scale!r} is not supported; use scale=2 or scale=4.")
    if isinstance(spec, str) and spec.lower() == "builtin":
        from .builtin.upscaler import load_builtin_upscaler

        return Upscaler("builtin", scale, load_builtin_upscaler(scale, device), tile=1024)
    if isinstance(spec, str) and spec.lower() == "lanczos":
        return Upscaler("lanczos", scale, lambda t: _lanczos(t, scale), tile=1024)
    path = Path(spec).expanduser()
    if path.suffix.lower() in MODEL_SUFFIXES:
        if not path.is_file():
            raise ModelNotFoundError(f"Upscaler model file {str(path)!r} does not exist; check the path.")
        return _spandrel_upscaler(path, scale, pick_device(device))
    if path.is_dir():
        return _diffusers_upscaler(path, scale, pick_device(device))
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


def _spandrel_upscaler(path: Path, scale: int, device: torch.device) -> Upscaler:
    try:
        import spandrel
    except ImportError as e:
        raise ModelNotFoundError(
            f"Loading upscaler models needs spandrel ({e}); install it with: pip install 'meshdream[upscale]'."
        ) from e
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
    model.to(device).eval()

    @torch.inference_mode()
    def run(tile: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))[None].to(device)
        return model(x)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    return Upscaler(f"{arch} ({path.name})", scale, run)


def _diffusers_upscaler(folder: Path, scale: int, device: torch.device) -> Upscaler:
    import json

    index = folder / "model_index.json"
    kind = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    if kind != "StableDiffusionUpscalePipeline":
        raise GeneratorKindError(
            f"{folder} is {'a ' + kind if kind else 'not a diffusers pipeline'}, not a StableDiffusionUpscalePipeline; "
            "pass e.g. a local copy of stabilityai/stable-diffusion-x4-upscaler, or a .pth upscaler file."
        )
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline.from_pretrained(
        folder, local_files_only=True, torch_dtype=torch.float16 if device.type == "cuda" else torch.float32
    )
    if pipe.vae_scale_factor != scale:
        raise GeneratorKindError(
            f"{folder.name} (StableDiffusionUpscalePipeline) upscales x{pipe.vae_scale_factor}, but scale={scale} "
            f"was asked; pass scale={pipe.vae_scale_factor}."
        )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def configure(prompt: str, steps: int, seed: int) -> TileFn:
        def run(tile: np.ndarray) -> np.ndarray:
            # The same seed on every tile: overlapping tiles then start from alike noise and blend more quietly.
            generator = torch.Generator(device).manual_seed(seed)
            out = pipe(prompt, tile[None], num_inference_steps=steps, generator=generator, output_type="np")
            return np.asarray(out.images[0], np.float32)

        return run

    return Upscaler(f"diffusion ({folder.name})", scale, configure("", 20, 0), configure=configure)
