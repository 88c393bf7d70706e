"""Procedural albedo materials: the built-in model's training data, named by a family word and a colour word.

Every family is a few vectorized numpy operations on fractal noise (made in the Fourier domain) and coordinate
grids with whole periods per image, so every material tiles: the training renders wrap it around 3D surfaces
(dataset.triplanar) without seams. No lighting is baked in. material_maps adds ground truth for PBR (roughness,
metallic, height) derived from the same fields as the albedo, so mortar lies where the mortar colour is (issue 27).
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
    return _albedo(family, colour, size, rng)[0]


def _albedo(family: str, colour: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The albedo and the fields it was made from (material_maps derives the other maps from them)."""
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
        radius = rng.uniform(0.2, 0.35)
        img = np.where((d < radius)[..., None], c, background)
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
    fields = {k: v for k, v in locals().items() if k not in ("family", "colour", "size", "rng", "img")}
    return np.clip(img, 0, 1).astype(np.float32), fields


MAP_FAMILY_KIND = {"metal": "metal"}  # families whose ground truth is metallic; every other family is dielectric


def material_maps(family: str, colour: str, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Albedo (size, size, 3) -- exactly material()'s for the same rng state -- and its ground truth: roughness and
    metallic (size, size) in [0, 1], height (size, size) in units of the image's side (a material image spans about
    a metre on a mesh, so 0.01 is about a centimetre). The extra random numbers are drawn after the albedo's, so the
    texture model's training data does not change."""
    img, f = _albedo(family, colour, size, rng)
    n = f["n"]
    zero = np.zeros((size, size))
    if family == "wood":  # oiled or varnished; latewood (the dark rings) a little rougher and raised
        grain = 0.5 - 0.5 * f["rings"]
        rough = rng.uniform(0.45, 0.7) + 0.12 * grain + 0.06 * (n - 0.5)
        height = 0.0015 * grain
    elif family == "marble":  # polished; the veins' fill is duller
        rough = rng.uniform(0.06, 0.2) + 0.1 * (1 - f["veins"])
        height = 0.0004 * f["veins"]
    elif family in ("brick", "tiles"):  # mortar and grout recessed and rough, bevelled by a blur of the joints
        bevel = _wrap_blur(f["mortar"].astype(np.float64), size / (200.0 if family == "brick" else 300.0))
        face = rng.uniform(0.72, 0.9) if family == "brick" else rng.uniform(0.08, 0.3)
        face_bumps = 0.0025 * n if family == "brick" else 0.0
        rough = np.where(f["mortar"], rng.uniform(0.9, 1.0), face + 0.06 * (n - 0.5) * (family == "brick"))
        height = (1 - bevel) * (0.012 if family == "brick" else 0.006) + face_bumps * (1 - bevel)
    elif family == "stone":  # rough and bumpy: the coarse noise is the relief
        rough = rng.uniform(0.7, 0.9) + 0.1 * (n - 0.5)
        height = 0.03 * f["coarse"] + 0.004 * n
    elif family == "metal":  # metallic, fairly glossy, the brushing a faint relief and a roughness streak
        rough = rng.uniform(0.2, 0.45) + 0.12 * (f["brushed"] - 0.5)
        height = 0.0006 * f["brushed"]
    elif family == "fabric":  # rough, the weave raised
        rough = rng.uniform(0.85, 0.95) + 0.05 * f["weave"]
        height = 0.004 * f["weave"]
    elif family == "grass":
        rough = rng.uniform(0.75, 0.9) + 0.1 * (f["blades"] - 0.5)
        height = 0.012 * f["blades"]
    elif family == "camouflage":  # printed cloth: flat, each dye a little different
        rough = rng.uniform(0.6, 0.8) + rng.uniform(-0.05, 0.05, 4)[f["q"]]
        height = zero
    else:  # dots, stripes, checker: printed, flat; the ink's sheen differs from the ground's
        ink = np.all(np.abs(img - np.clip(f["c"], 0, 1)) < 1e-6, axis=-1)
        rough = np.where(ink, rng.uniform(0.25, 0.6), rng.uniform(0.3, 0.6))
        height = zero
    metallic = np.full((size, size), 1.0 if MAP_FAMILY_KIND.get(family) == "metal" else 0.0)
    return {
        "albedo": img,
        "roughness": np.clip(rough, 0.02, 1).astype(np.float32),
        "metallic": metallic.astype(np.float32),
        "height": np.asarray(height, np.float32),
    }


def _wrap_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a tileable image, in the Fourier domain (wraps like the materials do)."""
    f = np.fft.fftfreq(image.shape[0])
    g = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * g))


def height_to_normal(height: np.ndarray) -> np.ndarray:
    """(S, S, 3) unit tangent-space normals of a tileable height field given in units of the image's side: x right,
    y up (OpenGL, as glTF and Blender read normal maps; image rows run down), z out of the surface."""
    size = height.shape[0]
    dx = (np.roll(height, -1, 1) - np.roll(height, 1, 1)) * (size / 2)
    d_row = (np.roll(height, -1, 0) - np.roll(height, 1, 0)) * (size / 2)
    n = np.stack([-dx, d_row, np.ones_like(dx)], -1)  # y up: dh/dy = -dh/drow
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)
