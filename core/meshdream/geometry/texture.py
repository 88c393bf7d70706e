"""Texture images and UV lookups, OBJ convention: v = 0 is the bottom row of the image.

Texel (row i, column j) covers u in [j, j+1]/S and v in [S-1-i, S-i]/S; its centre is sampled by
row = (1 - v) * S - 0.5, column = u * S - 0.5.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError


def check_texture_size(size: int) -> int:
    if int(size) != size or size < 1 or int(size) & (int(size) - 1):
        raise InvalidParameterError(
            f"Texture size {size!r} must be a positive power of two (e.g. 512, 1024, 2048) so mip-maps work."
        )
    return int(size)


def as_float_image(image, channels: int | None = None, name: str = "image") -> np.ndarray:
    """(H, W, C) float32 in [0, 1] from a float array or a uint8 array (PIL images convert through numpy)."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or (channels is not None and a.shape[-1] < channels):
        raise InvalidParameterError(f"The {name} must be an (H, W, {channels or 'C'}) array, got shape {a.shape}.")
    if channels is not None:
        a = a[..., :channels]
    if not np.isfinite(a).all():
        raise InvalidParameterError(f"The {name} contains NaN or infinite values; pass colours in [0, 1].")
    return a


def uv_to_pixel(uv: np.ndarray, size: int) -> np.ndarray:
    """UV (N, 2) -> continuous (column, row) coordinates where integer + 0.5 is a texel centre."""
    return np.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], axis=-1)


def bilinear_taps(xy: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The four pixels (flat indices (N, 4)) and weights (N, 4) of bilinear lookups in an (h, w) image at
    continuous coordinates (N, 2) = (x, y), pixel centres at integer + 0.5, clamped to the image."""
    x = np.clip(xy[:, 0] - 0.5, 0, w - 1)
    y = np.clip(xy[:, 1] - 0.5, 0, h - 1)
    x0 = np.minimum(x.astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(y.astype(np.int64), h - 2 if h > 1 else 0)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    index = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], axis=1)
    weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    return index, weight


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an (H, W, C) image at continuous pixel coordinates (N, 2) = (x, y), where pixel centres
    are at integer + 0.5; coordinates are clamped to the image (edge texels extend outwards)."""
    h, w = image.shape[:2]
    index, weight = bilinear_taps(xy, h, w)
    flat = image.reshape(h * w, -1)
    out = flat[index[:, 0]] * weight[:, :1]
    for k in range(1, 4):
        out += flat[index[:, k]] * weight[:, k : k + 1]
    return out.reshape(len(xy), *image.shape[2:])


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at UV coordinates (N, 2)."""
    return sample_bilinear(texture, uv_to_pixel(uv, texture.shape[0]))
