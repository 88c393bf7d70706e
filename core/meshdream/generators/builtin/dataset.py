"""Training and evaluation renders for the built-in model: procedural materials on meshes, seen from random views.

Each sample is (albedo, depth, camera-space normal) at `resolution`, plus its family and colour words. Materials
are wrapped around the surface in 3D (triplanar: three axis projections of the tileable material, blended by the
normal), not through the UV layout, so a brick course runs on around the mesh instead of breaking at every UV
chart, and a pattern has about one world-space scale on every mesh. Albedo is rendered at twice the resolution and
averaged (anti-aliased), depth and normals at the resolution itself, as texturing renders them. Meshes are
primitives of several proportions, the bundled assets and procedural shapes of every category (core only, so
every machine renders the same data); views are framed by orbit_cameras at random azimuth and elevation.
Texture k draws everything from its own seed (seed, k), so any number of worker processes renders the same set.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from ...geometry import load_mesh, orbit_cameras, raycast, render
from ...images import depth_to_image
from ...shapes.procedural import CATEGORIES, make_shape, shape_seed
from .materials import COLOURS, DEFAULT_COLOUR, FAMILIES, material

TILE_WORLD = (0.9, 1.6)  # world size of one material image (meshes are normalized to a longest side of 2)


@dataclass
class Renders:
    albedo: np.ndarray  # (N, H, W, 3) uint8
    depth: np.ndarray  # (N, H, W) float16, depth_to_image convention
    normal: np.ndarray  # (N, H, W, 3) int8, camera-space normal * 127
    family: np.ndarray  # (N,) int index into FAMILIES
    colour: np.ndarray  # (N,) int index into colour list, -1 = prompt names no colour
    colour_names: tuple

    def prompt(self, i: int) -> str:
        fam = FAMILIES[self.family[i]]
        return fam if self.colour[i] < 0 else f"{self.colour_names[self.colour[i]]} {fam}"


def training_meshes(shapes_per_category: int = 2) -> list[trimesh.Trimesh]:
    c = trimesh.creation
    primitives = [
        c.box(extents=(1.0, 0.7, 0.5)),
        c.box(extents=(1.0, 1.0, 1.0)),
        c.box(extents=(2.0, 0.3, 1.2)),
        c.box(extents=(0.4, 1.6, 0.4)),
        c.icosphere(3),
        c.cylinder(0.5, 1.5, sections=48),
        c.cylinder(1.0, 0.4, sections=48),
        c.capsule(1.0, 0.4),
        c.torus(0.8, 0.3),
        c.cone(0.7, 1.4, sections=48),
    ]
    shapes = [make_shape(cat, shape_seed(cat, i)).mesh() for cat in CATEGORIES for i in range(shapes_per_category)]
    assets = [Path(__file__).parents[2] / "assets" / n for n in ("spot.obj", "suzanne.obj")]
    return [load_mesh(m, unwrap="never") for m in primitives + shapes + assets]


def _wrap_bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a tileable (S, S, C) image at coordinates in tiles (any real number wraps)."""
    s = image.shape[0]
    flat = image.reshape(s * s, -1)
    x, y = u * s - 0.5, v * s - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64) % s, y0.astype(np.int64) % s
    x1, y1 = (x0 + 1) % s, (y0 + 1) % s
    r0, r1 = y0 * s, y1 * s
    top = flat[r0 + x0] * (1 - fx) + flat[r0 + x1] * fx
    return top * (1 - fy) + (flat[r1 + x0] * (1 - fx) + flat[r1 + x1] * fx) * fy


def triplanar(image: np.ndarray, position: np.ndarray, normal: np.ndarray, sharpness: float = 8.0) -> np.ndarray:
    """(N, C) colours of a tileable material at surface points (N, 3) given in tiles: the projections along x, y
    and z (rows of the image run along y on upright faces, so bricks lie flat), weighted by |normal|^sharpness so
    that each face mostly shows one undistorted projection (and only those that weigh are looked up)."""
    w = np.abs(normal) ** sharpness
    w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
    x, y, z = position.T
    out = np.zeros((len(position), image.shape[-1]), np.float64)
    for axis, (u, v) in enumerate(((z, -y), (x, z), (x, -y))):
        use = w[:, axis] > 1e-3
        out[use] += w[use, axis, None] * _wrap_bilinear(image, u[use], v[use])
    return out


def _texture_renders(k: int, seed: int, meshes, resolution: int, views: int, texture_size: int, balanced: bool):
    """The `views` renders of texture k: (albedo, depth, normal) stacks, family, colour (-1: unnamed)."""
    rng = np.random.default_rng([seed, k])
    colours = tuple(COLOURS)
    fam = k % len(FAMILIES) if balanced else int(rng.integers(len(FAMILIES)))
    named = rng.random() > 0.2
    col = int(rng.integers(len(colours))) if named else colours.index(DEFAULT_COLOUR[FAMILIES[fam]])
    tex = material(FAMILIES[fam], colours[col], texture_size, rng)
    mesh = meshes[int(rng.integers(len(meshes)))]
    # The material's frame: turned about the up axis, shifted, and scaled to TILE_WORLD per image.
    turn = rng.uniform(0, 2 * np.pi)
    frame = np.array([[np.cos(turn), 0, -np.sin(turn)], [0, 1, 0], [np.sin(turn), 0, np.cos(turn)]])
    scale, shift = 1 / rng.uniform(*TILE_WORLD), rng.random(3)
    # Mostly around the object, some from straight above or below, as texturing's default views look.
    polar = rng.random(views * 2) < 0.15
    elevations = np.where(polar, rng.choice([89.0, -89.0], views * 2), rng.uniform(-30, 60, views * 2))
    cams = orbit_cameras(
        len(elevations), resolution=resolution, fov=float(rng.uniform(30, 50)), mesh=mesh, elevations=elevations
    )
    out = []
    for cam in rng.choice(cams, views, replace=False):
        maps = render(mesh, cam)
        fine = cam.resized(2)
        hi = render(mesh, fine)
        hit = hi.mask.ravel()
        dirs = fine.pixel_directions()[hit] @ fine.rotation  # world directions with unit depth
        points = fine.position + hi.depth.ravel()[hit, None] * dirs
        albedo = np.ones((fine.height * fine.width, 3), np.float32)
        albedo[hit] = triplanar(tex, (points @ frame.T) * scale + shift, hi.normal.reshape(-1, 3)[hit] @ frame.T)
        albedo = albedo.reshape(resolution, 2, resolution, 2, 3).mean((1, 3))
        albedo[~maps.mask] = 1.0
        out.append(
            (
                (albedo * 255 + 0.5).astype(np.uint8),
                depth_to_image(maps.depth).astype(np.float16),
                np.round(maps.normal @ cam.rotation.T * 127).astype(np.int8),
            )
        )
    return out, fam, col if named else -1


_JOB: tuple = ()  # make_renders' arguments, inherited by forked workers (the meshes are not pickled per task)


def _start_worker(job: tuple) -> None:
    """Worker processes already use every core: their ray casts stay on one thread."""
    global _JOB
    _JOB = job
    raycast.THREADS = 1


def _chunk(ks) -> list:
    return [_texture_renders(k, *_JOB) for k in ks]


def make_renders(
    n_textures: int,
    views_per_texture: int,
    resolution: int,
    seed: int,
    meshes,
    texture_size: int = 256,
    balanced: bool = False,
    workers: int = 1,
) -> Renders:
    """balanced: texture k is of family k % len(FAMILIES) (evaluation sets), else families are drawn at random.
    workers: processes rendering at once (forked; the set does not depend on it)."""
    job = (seed, meshes, resolution, views_per_texture, texture_size, balanced)
    if workers > 1:
        chunks = np.array_split(np.arange(n_textures), min(workers * 4, n_textures))
        with ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), _start_worker, (job,)) as pool:
            results = [r for part in pool.map(_chunk, chunks) for r in part]
    else:
        results = [_texture_renders(k, *job) for k in range(n_textures)]
    images = [img for views, _, _ in results for img in views]
    albedo, depth, normal = (np.stack([img[i] for img in images]) for i in range(3))
    fam = np.repeat([f for _, f, _ in results], views_per_texture)
    col = np.repeat([c for _, _, c in results], views_per_texture)
    return Renders(albedo, depth, normal, fam, col, tuple(COLOURS))
