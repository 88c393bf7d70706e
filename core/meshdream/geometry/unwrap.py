"""Automatic UV unwrapping with xatlas, and the test that decides whether a mesh's own UVs are usable."""

from __future__ import annotations

import numpy as np
import trimesh

# Rasterizing UV triangles at this resolution is enough to see overlap; it costs a few milliseconds.
_OVERLAP_GRID = 256
# Layouts that stray at most this far outside [0, 1] are scaled back in rather than re-unwrapped.
_UV_SLACK = 0.25


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


def fit_unit_square(uv: np.ndarray | None) -> np.ndarray | None:
    """Scale and shift a layout that strays slightly outside [0, 1] (common in exported files) back inside,
    keeping its aspect ratio; layouts far outside (tiles, UDIMs) are returned unchanged for unwrapping."""
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


def unwrap(vertices: np.ndarray, faces: np.ndarray, resolution: int = 1024, padding: int = 4):
    """Unwrap with xatlas; returns (vertex_map, faces, uv): new vertex i is old vertex vertex_map[i].

    `padding` texels (at `resolution`) separate the charts, so edge padding has room and mip-maps do not bleed.
    """
    import xatlas

    atlas = xatlas.Atlas()
    # xatlas wants float32 vertices and uint32 faces; other dtypes can crash the process.
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = padding
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    vmap, new_faces, uv = atlas[0]
    return vmap.astype(np.int64), new_faces.astype(np.int64), uv.astype(np.float64)


def unwrapped(mesh: trimesh.Trimesh, resolution: int = 1024, padding: int = 4) -> trimesh.Trimesh:
    """A copy of `mesh` with a fresh xatlas UV layout (vertices split along the new seams)."""
    vmap, faces, uv = unwrap(mesh.vertices, mesh.faces, resolution, padding)
    out = trimesh.Trimesh(mesh.vertices[vmap], faces, visual=trimesh.visual.TextureVisuals(uv=uv), process=False)
    out.metadata.update(mesh.metadata)
    return out
