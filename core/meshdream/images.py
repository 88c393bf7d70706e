"""Image files and arrays: reading colour images, writing 8-bit colour and 16-bit depth, contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidParameterError
from .files import writing


def read_image(path, mode: str = "RGB", what: str = "image") -> np.ndarray:
    """(H, W, C) float32 in [0, 1] of the image file at `path` in PIL `mode`; a missing or unreadable file is an
    InvalidParameterError naming it (`what`: how the caller's user knows that path)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode), np.float32) / 255
    except FileNotFoundError:
        raise InvalidParameterError(f"No {what} at '{path}'; check the path.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidParameterError(f"'{path}' is not a readable image ({exc}).") from None


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(np.nan_to_num(image), 0, 1) * 255 + 0.5).astype(np.uint8)


def save_png(image: np.ndarray, path: Path) -> Path:
    """(H, W[, C]) float in [0, 1] -> 8-bit PNG, written whole or not at all (files.writing)."""
    a = to_uint8(image)
    with writing(path) as (temp,):
        Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a).save(temp, format="PNG")
    return path


def depth_to_image(depth: np.ndarray) -> np.ndarray:
    """Depth with NaN background -> [0, 1] with near = bright and background 0 (the ControlNet convention)."""
    out = np.zeros(depth.shape, np.float32)
    valid = np.isfinite(depth)
    if valid.any():
        lo, hi = depth[valid].min(), depth[valid].max()
        out[valid] = 1.0 - 0.8 * (depth[valid] - lo) / max(hi - lo, 1e-9)
    return out


def save_depth16(depth: np.ndarray, path: Path) -> Path:
    """Depth as a 16-bit PNG (near = bright, background 0), for tools that want more than 8 bits."""
    with writing(path) as (temp,):
        Image.fromarray((depth_to_image(depth) * 65535 + 0.5).astype(np.uint16)).save(temp, format="PNG")
    return path


def contact_sheet(
    images: list[np.ndarray], columns: int, gap: int = 4, row_labels=(), label_width: int = 110
) -> np.ndarray:
    """Tile (H, W, 3) float images of one size into a sheet with white gaps; with `row_labels`, each row's label is
    written in a white column `label_width` pixels wide on its left."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    sheet = np.ones((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), np.float32)
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        img = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = img[..., :3]
    if not row_labels:
        return sheet
    from PIL import ImageDraw

    labelled = Image.new("RGB", (sheet.shape[1] + label_width, sheet.shape[0]), "white")
    labelled.paste(Image.fromarray((sheet * 255).round().astype(np.uint8)), (label_width, 0))
    draw = ImageDraw.Draw(labelled)
    for r, label in enumerate(row_labels):
        draw.text((4, r * (h + gap) + h // 2), str(label), fill="black")
    return np.asarray(labelled, np.float32) / 255
