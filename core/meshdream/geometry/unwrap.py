"""Automatic UV unwrapping with xatlas, and the test that decides whether a mesh's own UVs are usable."""

from __future__ import annotations

from typing import Optional

import numpy as np
import trimesh

from ..progress import CancelToken, ProgressCallback
from . import xatlas_job
from .unwrap_process import unwrap_in_child

# Rasterizing UV triangles at this resolution is enough to see overlap; it costs a few milliseconds.
_OVERLAP_GRID = 256
# Layouts that stray at most this far outside [0, 1] are scaled back in rather than re-unwrapped.
_UV_SLACK = 0.25
# xatlas checks each growing chart's boundary for self-intersection, which costs more the larger charts grow: a
# 123k-face mesh took 42 s (2 cores). Above this many faces, chart boundaries are capped at half the mesh's size
# and packing is brute force (smaller charts pack worse otherwise): 4.8 s, 76 % of the atlas used instead of 80 %.
LARGE_MESH = 10_000
# UDIM faces may touch their tile's border within this (exporters' round-off).
_UDIM_SLACK = 1e-4


def uvs_usable(uv: np.ndarray | None, faces: np.ndarray, max_overlap: float = 0.05) -> bool:
    """True when per-vertex UVs exist, are finite, lie in [0, 1] (see `fit_unit_square`) and overlap on at most
    `max_overlap` of their area.

    Overlapping (e.g. mirrored) UVs would force the same texels onto two surfaces, which texturing cannot honour.
    """
    if uv is None or len(uv) == 0:
        return False
    if not np.isfinite(uv).all():
        return False
    if uv.min() < -1e-6 or uv.max() > 1 + 1e-6:
        return False
    tri = uv[faces]
    area = 0.5 * np.abs(
        (tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
        - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1])
    )
    total = area.sum()
    if total < 1e-6:
        return False
    from .uvmaps import rasterize_uv  # deferred: uvmaps needs the ray caster, not needed for the cheap checks

    # Texel centres sample the union of the triangles; the summed triangle area counts overlaps twice.
    union = (rasterize_uv(uv, faces, _OVERLAP_GRID)[0] >= 0).mean()
    overlap = total / max(union, 1e-9) - 1.0
    return bool(overlap <= max_overlap)


def udim_tiles(uv: np.ndarray | None, faces: np.ndarray) -> np.ndarray | None:
    """(F,) int64 UDIM tile of each face (1001 + u tile + 10 * v tile) when the layout is a UDIM layout that uses
    more than tile 1001: u in [0, 10), v >= 0 and no face straddling a tile border. None otherwise.

    Such layouts are kept as they are (one texture per tile), never fitted into [0, 1] or re-unwrapped."""
    if uv is None or len(uv) == 0 or not np.isfinite(uv).all():
        return None
    corner = uv[faces]
    u, v = corner[..., 0], corner[..., 1]
    if u.min() < -_UDIM_SLACK or u.max() > 10 + _UDIM_SLACK or v.min() < -_UDIM_SLACK:
        return None
    tile = np.floor(corner.mean(axis=1))  # a face's tile is the one holding its centroid
    tile[:, 0] = np.clip(tile[:, 0], 0, 9)
    tile[:, 1] = np.maximum(tile[:, 1], 0)
    inside = (corner >= tile[:, None] - _UDIM_SLACK) & (corner <= tile[:, None] + 1 + _UDIM_SLACK)
    if not inside.all():
        return None
    number = (1001 + tile[:, 0] + 10 * tile[:, 1]).astype(np.int64)
    return None if (number == 1001).all() else number


def fit_unit_square(uv: np.ndarray | None) -> np.ndarray | None:
    """Scale and shift a layout that strays slightly outside [0, 1] (common in exported files) back inside,
    keeping its aspect ratio; layouts far outside (repeats) are returned unchanged for unwrapping. UDIM layouts
    (`udim_tiles`) are checked first and never come here."""
    if uv is None or len(uv) == 0 or not np.isfinite(uv).all():
        return uv
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    if (lo >= 0).all() and (hi <= 1).all():
        return uv
    if (lo < -_UV_SLACK).any() or (hi > 1 + _UV_SLACK).any():
        return uv
    span = max(float((hi - lo).max()), 1.0)
    shift = np.clip(np.zeros(2), hi - span, lo)  # moves as little as possible
    return (uv - shift) / span


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    resolution: int = 1024,
    padding: int = 4,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
):
    """Unwrap with xatlas; returns (vertex_map, faces, uv): new vertex i is old vertex vertex_map[i].

    `padding` texels (at `resolution`) separate the charts, so edge padding has room and mip-maps do not bleed.
    Meshes of more than LARGE_MESH faces unwrap with capped charts in a child process that reports progress
    (stage "unwrap") and is killed on cancel (CancelledError).
    """
    options = {"resolution": resolution, "padding": padding}
    if len(faces) <= LARGE_MESH:
        return xatlas_job.generate(vertices, faces, options)
    extent = float(np.ptp(np.asarray(vertices), axis=0).max())
    options.update(max_boundary_length=0.5 * extent, brute_force=True)
    return unwrap_in_child(vertices, faces, options, progress, cancel)


def unwrapped(
    mesh: trimesh.Trimesh,
    resolution: int = 1024,
    padding: int = 4,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> trimesh.Trimesh:
    """A copy of `mesh` with a fresh xatlas UV layout (vertices split along the new seams)."""
    vmap, faces, uv = unwrap(mesh.vertices, mesh.faces, resolution, padding, progress, cancel)
    out = trimesh.Trimesh(mesh.vertices[vmap], faces, visual=trimesh.visual.TextureVisuals(uv=uv), process=False)
    out.metadata.update(mesh.metadata)
    out.face_attributes.update(mesh.face_attributes)  # xatlas keeps the faces and their order
    return out
