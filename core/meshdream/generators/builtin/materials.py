"""Procedural albedo materials: the built-in model's training data, named by a family word and a colour word.

Every family is a few vectorized numpy operations on fractal noise (made in the Fourier domain) and coordinate
grids with whole periods per image, so every material tiles: the training renders wrap it around 3D surfaces
(dataset.triplanar) without seams. Albedo only: no lighting is baked in.
"""

from __future__ import annotations

import numpy as np

COLOURS = {
    "red": (0.72, 0.16, 0.12),
    "orange": (0.88, 0.45, 0.12),
    "yellow": (0.90, 0.78, 0.20),
    "green": (0.22, 0.55, 0.20),
    "blue": (0.16, 0.32, 0.75),
    "purple": (0.45, 0.20, 0.60),
    "pink": (0.92, 0.55, 0.68),
    "brown": (0.45, 0.28, 0.14),
    "white": (0.92, 0.91, 0.88),
    "black": (0.10, 0.10, 0.11),
    "gray": (0.50, 0.50, 0.50),
    "beige": (0.82, 0.72, 0.55),
    "gold": (0.83, 0.66, 0.25),
}
# The colour each family takes when the prompt names none.
DEFAULT_COLOUR = {
    "wood": "brown",
    "marble": "white",
    "brick": "red",
    "tiles": "white",
    "stone": "gray",
    "metal": "gray",
    "fabric": "blue",
    "grass": "green",
    "camouflage": "green",
    "dots": "red",
    "stripes": "blue",
    "checker": "black",
}
FAMILIES = tuple(DEFAULT_COLOUR)


def fractal_noise(rng: np.random.Generator, size: int, beta: float = 2.0, stretch: tuple = (1.0, 1.0)) -> np.ndarray:
    """Tileable 1/f^beta noise in [0, 1]; `stretch` > 1 along an axis makes streaks along it (wood, brushed metal)."""
    fy = np.fft.fftfreq(size)[:, None] * stretch[0]
    fx = np.fft.fftfreq(size)[None, :] * stretch[1]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f ** (beta / 2)
    spectrum[0, 0] = 0
    n = np.real(np.fft.ifft2(spectrum))
    n -= n.min()
    return n / max(n.max(), 1e-9)


def _mix(a, b, t):
    t = np.asarray(t)[..., None]
    return np.asarray(a) * (1 - t) + np.asarray(b) * t


def _shade(colour, factor):
    return np.clip(np.asarray(colour) * factor, 0, 1)


def material(family: str, colour: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 albedo of `family` in `colour`."""
    c = np.asarray(COLOURS[colour]) * rng.uniform(0.9, 1.1, 3)
    y, x = np.mgrid[0:size, 0:size] / size
    n = fractal_noise(rng, size)
    if family == "wood":
        warp = fractal_noise(rng, size, 2.5, (1, 8))
        rings = np.sin(2 * np.pi * (rng.integers(6, 15) * (y + 0.35 * warp)))
        img = _mix(_shade(c, 0.6), _shade(c, 1.15), 0.5 + 0.5 * rings * (0.6 + 0.4 * n))
    elif family == "marble":
        turb = fractal_noise(rng, size, 2.2)
        veins = np.abs(np.sin(2 * np.pi * (rng.integers(2, 5) * (x + y) + 3.0 * turb))) ** 0.3
        vein = _shade(c, 0.35) if colour != "black" else np.array([0.85, 0.85, 0.85])
        img = _mix(vein, c, veins)
    elif family in ("brick", "tiles"):
        rows = 2 * rng.integers(3, 6) if family == "brick" else rng.integers(4, 9)  # brick: even, so it tiles
        cols = rows // 2 if family == "brick" else rows
        r = y * rows
        shift = (np.floor(r) % 2) * 0.5 if family == "brick" else 0.0
        cpos = x * cols + shift
        gap = 0.07 if family == "brick" else 0.05
        mortar = (np.abs(r - np.round(r)) < gap) | (np.abs(cpos - np.round(cpos)) < gap * cols / rows * 2)
        cell = (np.floor(r) * 97 + np.floor(cpos) * 13) % 17 / 17.0
        face = _mix(_shade(c, 0.85), _shade(c, 1.1), 0.6 * cell + 0.4 * n)
        grout = np.array([0.75, 0.74, 0.70]) if family == "brick" else _shade(c, 0.55) * 0 + 0.35
        img = np.where(mortar[..., None], grout, face)
    elif family == "stone":
        coarse = fractal_noise(rng, size, 3.0)
        img = _mix(_shade(c, 0.55), _shade(c, 1.2), 0.65 * coarse + 0.35 * n)
    elif family == "metal":
        brushed = fractal_noise(rng, size, 1.5, (1, 30))
        img = _mix(_shade(c, 0.8), _shade(c, 1.15), 0.7 * brushed + 0.3 * n)
    elif family == "fabric":
        k = rng.integers(40, 71)
        weave = 0.5 + 0.25 * (np.sin(2 * np.pi * k * x) + np.sin(2 * np.pi * k * y))
        img = _mix(_shade(c, 0.7), _shade(c, 1.1), 0.7 * weave + 0.3 * n)
    elif family == "grass":
        blades = fractal_noise(rng, size, 1.2, (12, 1))
        img = _mix(_shade(c, 0.45), _shade(c, 1.25), 0.75 * blades + 0.25 * n)
    elif family == "camouflage":
        levels = fractal_noise(rng, size, 3.2)
        q = np.digitize(levels, np.quantile(levels, [0.3, 0.55, 0.8]))
        palette = np.stack([_shade(c, 0.5), c, _shade(c, 1.35), np.array([0.25, 0.2, 0.12])])
        img = palette[q]
    elif family == "dots":
        k = rng.integers(5, 11)
        d = np.hypot((x * k) % 1 - 0.5, (y * k) % 1 - 0.5)
        background = np.array([0.93, 0.92, 0.88]) if colour != "white" else np.array([0.15, 0.15, 0.2])
        img = np.where((d < rng.uniform(0.2, 0.35))[..., None], c, background)
    elif family == "stripes":
        k = rng.integers(4, 10)
        band = (np.floor((x * k + y * rng.integers(-1, 2)) * 2) % 2).astype(bool)  # slanted by a whole period
        other = np.array([0.93, 0.92, 0.88]) if colour != "white" else np.array([0.2, 0.2, 0.25])
        img = np.where(band[..., None], c, other)
    elif family == "checker":
        k = 2 * rng.integers(2, 5)  # even, so it tiles
        cell = ((np.floor(x * k) + np.floor(y * k)) % 2).astype(bool)
        other = np.array([0.93, 0.92, 0.88]) if colour != "white" else np.array([0.15, 0.15, 0.15])
        img = np.where(cell[..., None], c, other)
    else:
        raise KeyError(family)
    return np.clip(img, 0, 1).astype(np.float32)
