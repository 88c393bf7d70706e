"""PBR maps as one value (TextureResult.maps): checks, normal renormalization, gutter padding, and applying an image
operation (inpainting, upscaling) to every map so that callers get back the kind they gave."""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import trimesh

from ..errors import InvalidParameterError
from ..generators.material_models import MAP_NAMES
from ..geometry.texture import as_float_image
from ..geometry.uvmaps import uv_maps

FLAT = np.array([0.5, 0.5, 1.0], np.float32)  # the encoded tangent-space normal (0, 0, 1): no detail


def check_maps(maps: Mapping[str, np.ndarray]) -> None:
    """A maps dict has the four maps, one square size, the channels TextureResult.maps describes."""
    if set(maps) != set(MAP_NAMES):
        raise InvalidParameterError(f"Got maps {sorted(maps)}; a material has {', '.join(MAP_NAMES)}.")
    want = {"base_color": 3, "roughness": None, "metallic": None, "normal": 3}
    size = np.shape(maps["base_color"])[0]
    for name, channels in want.items():
        shape = np.shape(maps[name])
        expected = (size, size) if channels is None else (size, size, channels)
        if shape != expected:
            raise InvalidParameterError(f"The {name} map has shape {shape}; expected {expected} like the base colour.")


def padded(mesh: trimesh.Trimesh, image: np.ndarray) -> np.ndarray:
    """The image with every gutter texel copying its nearest covered texel (as inpaint_uv pads)."""
    out = image.copy()
    flat = out.reshape(-1, out.shape[-1])
    texels, source, _ = uv_maps(mesh, image.shape[0]).gutter
    flat[texels] = flat[source]
    return out


def renormalized(encoded: np.ndarray) -> np.ndarray:
    """An encoded normal map with every texel a unit vector again (filtering and resizing shorten them)."""
    n = encoded * 2.0 - 1.0
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    return (n * 0.5 + 0.5).astype(np.float32)


def for_maps(value, work, whole: bool = False):
    """Apply an image operation to PBR maps, returning the kind given: `value` a maps dict or a TextureResult with
    maps (its weight scaled along when the size changes). whole: `work` takes and returns the maps dict; else it
    takes one (S, S, 3) image (roughness and metallic go as two channels of one, normals are renormalized after)."""
    result = value if hasattr(value, "maps") else None
    if result is not None and result.textures:
        raise InvalidParameterError(
            "This result has texture pages; pass each page's maps (TextureResult.page_maps[name]) with its mesh."
        )
    if result is not None and not result.maps:
        raise InvalidParameterError("This result has no PBR maps; pass its texture (result.texture) instead.")
    maps = result.maps if result is not None else value
    check_maps(maps)
    out = work(maps) if whole else _each_map(maps, work)
    if result is None:
        return out
    k = out["base_color"].shape[0] // result.texture.shape[0]
    weight = result.weight if k == 1 else np.repeat(np.repeat(result.weight, k, 0), k, 1)
    return dataclasses.replace(result, texture=out["base_color"], weight=weight, maps=out)


def _each_map(maps: Mapping[str, np.ndarray], work) -> dict:
    base = work(maps["base_color"])
    size = np.shape(maps["roughness"])[0]
    scalars = work(np.stack([maps["roughness"], maps["metallic"], np.zeros((size, size), np.float32)], axis=-1))
    normal = renormalized(np.clip(work(as_float_image(maps["normal"], 3, "normal map")), 0.0, 1.0))
    return {
        "base_color": base,
        "roughness": scalars[..., 0].copy(),
        "metallic": scalars[..., 1].copy(),
        "normal": normal,
    }
