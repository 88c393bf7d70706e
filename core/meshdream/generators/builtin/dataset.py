"""Training and evaluation renders for the built-in model: procedural materials on meshes, seen from random views.

Each sample is (albedo, depth, camera-space normal, mask) at `resolution`, plus its family and colour words. Meshes
are the bundled/shared test meshes and trimesh primitives, UV-unwrapped by the core; views are framed by
orbit_cameras with random azimuth and elevation; images come from the core renderer (albedo only, white
background).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from ...geometry import load_mesh, orbit_cameras, render, render_texture
from ...images import depth_to_image
from .materials import COLOURS, DEFAULT_COLOUR, FAMILIES, material


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


def training_meshes(shared: Path | None = None) -> list[trimesh.Trimesh]:
    meshes = [
        trimesh.creation.box(extents=(1.0, 0.7, 0.5)),
        trimesh.creation.icosphere(3),
        trimesh.creation.cylinder(0.5, 1.5, sections=48),
        trimesh.creation.capsule(1.0, 0.4),
        trimesh.creation.torus(0.8, 0.3),
        trimesh.creation.cone(0.7, 1.4, sections=48),
    ]
    assets = [Path(__file__).parents[2] / "assets" / "spot.obj"]
    if shared is not None:
        assets += [shared / n for n in ("suzanne.obj", "teapot.obj") if (shared / n).exists()]
    loaded = [load_mesh(m) for m in meshes] + [load_mesh(p) for p in assets]
    return loaded


def make_renders(
    n_textures: int,
    views_per_texture: int,
    resolution: int,
    seed: int,
    meshes,
    texture_size: int = 256,
    balanced: bool = False,
) -> Renders:
    """balanced: texture k is of family k % len(FAMILIES) (evaluation sets), else families are drawn at random."""
    rng = np.random.default_rng(seed)
    colours = tuple(COLOURS)
    albedo, depth, normal, fam_idx, col_idx = [], [], [], [], []
    for k in range(n_textures):
        fam = k % len(FAMILIES) if balanced else int(rng.integers(len(FAMILIES)))
        named = rng.random() > 0.2
        col = int(rng.integers(len(colours))) if named else colours.index(DEFAULT_COLOUR[FAMILIES[fam]])
        tex = material(FAMILIES[fam], colours[col], texture_size, rng)
        mesh = meshes[int(rng.integers(len(meshes)))]
        elevations = rng.uniform(-30, 60, size=views_per_texture * 2)
        cams = orbit_cameras(
            len(elevations), resolution=resolution, fov=float(rng.uniform(30, 50)), mesh=mesh, elevations=elevations
        )
        for cam in rng.choice(cams, views_per_texture, replace=False):
            maps = render(mesh, cam)
            albedo.append((render_texture(mesh, tex, cam, background=1.0, maps=maps) * 255 + 0.5).astype(np.uint8))
            depth.append(depth_to_image(maps.depth).astype(np.float16))
            n_cam = maps.normal @ cam.rotation.T
            normal.append(np.round(n_cam * 127).astype(np.int8))
            fam_idx.append(fam)
            col_idx.append(col if named else -1)
    return Renders(np.stack(albedo), np.stack(depth), np.stack(normal), np.array(fam_idx), np.array(col_idx), colours)
