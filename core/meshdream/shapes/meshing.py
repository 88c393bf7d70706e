"""`points_to_mesh`: a closed, UV-unwrapped triangle mesh from a bare point cloud (generated or scanned).

The surface is a morphological closing of the points, computed on a voxel grid: splat the points, grow them by
a gap radius r that bridges the spaces between samples, flood the grid from its border (what the flood cannot
reach is solid, so no sampling gap lets the outside in), then take the level set at distance r - t from the
flooded region. Without the -t the closing would give back the points' own surface, which for a sheet thinner
than a voxel (a shelf board, a fin) has no inside at all; t keeps every part at least 2t thick. The field is
smoothed, meshed by marching cubes (closed by construction: the solid never touches the grid border), small
debris is dropped, Taubin smoothing removes the voxel steps without shrinking, and xatlas unwraps the result.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InvalidMeshError, InvalidParameterError

MIN_POINTS = 16
# A marching-cubes surface has about this many triangles per (voxel size)² of area; it sets the grid resolution.
_FACES_PER_VOXEL_AREA = 3.0
# Every part stays at least 2 x this many voxels thick (a board sampled on both faces keeps an inside).
_THICK = 0.6
_MIN_VOXEL, _MAX_VOXEL = 2.0 / 128, 2.0 / 20  # in units of the cloud's radius
# Components with fewer faces than this fraction of the largest are debris (stray points), not parts.
_DEBRIS = 0.08


def check_points(points, name: str = "points") -> np.ndarray:
    """(N, 3) finite float64, N >= MIN_POINTS, not all at one spot; else an error saying what to fix."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{name} must be an (N, 3) array of numbers ({exc}).") from exc
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InvalidParameterError(
            f"{name} has shape {arr.shape}; pass an (N, 3) array of x, y, z rows (reshape(-1, 3) a flat array).")
    if len(arr) < MIN_POINTS:
        raise InvalidParameterError(
            f"{name} has {len(arr)} points; at least {MIN_POINTS} are needed to recover a surface (2048 is typical).")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidParameterError(
            f"{name} has {int(bad.sum())} rows with NaN or infinite coordinates; drop them first "
            "(points[np.isfinite(points).all(1)]).")
    if np.ptp(arr, axis=0).max() <= 1e-12:
        raise InvalidParameterError(f"All {len(arr)} {name} are at one spot; a surface needs points spread in space.")
    return arr


def gap_radius(points: np.ndarray) -> float:
    """How far apart neighbouring samples may be on this cloud's surface: the 95th percentile of each point's
    distance to its 6th neighbour (robust to a few stray points, large enough to bridge random sampling gaps)."""
    d, _ = cKDTree(points).query(points, k=min(7, len(points)))
    return float(np.percentile(d[:, -1], 95))


def _grid_field(unit: np.ndarray, voxel: float, r: float, thick: float):
    """Smoothed closing field on a grid over the points' bounds plus a margin: > 0 inside.
    Returns (field, origin (3,), voxel)."""
    pad = r + 4 * voxel
    origin = unit.min(0) - pad
    dims = np.ceil((unit.max(0) + pad - origin) / voxel).astype(np.int64) + 1
    ijk = np.rint((unit - origin) / voxel).astype(np.int64)
    occupied = np.zeros(dims, bool)
    occupied[tuple(ijk.T)] = True
    grown = ndimage.distance_transform_edt(~occupied) * voxel <= r
    labels, _ = ndimage.label(~grown)
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                                       labels[..., [0, -1]].ravel()]))
    outside = np.isin(labels, border[border > 0])
    depth = ndimage.distance_transform_edt(~outside) * voxel  # distance from the flooded outside
    field = ndimage.gaussian_filter(depth - (r - thick), sigma=0.8)
    return field, origin, voxel


def points_to_mesh(points, face_budget: int = 20000, unwrap: bool = True, smooth: int = 10,
                   resolution: int | None = None) -> trimesh.Trimesh:
    """A closed (watertight) mesh around `points` ((N, 3), any frame and scale; the mesh comes back in the same).

    face_budget: upper bound on triangles; the grid resolution is chosen so the surface stays under it.
    unwrap: give it an xatlas UV layout at once, ready to texture. Vertices are then split along the UV seams
        as in every textured mesh, so check closedness on a copy welded by position (`is_closed`);
        unwrap=False returns the welded mesh, for which trimesh's `is_watertight` holds.
    smooth: Taubin smoothing iterations; resolution: voxels across the cloud's radius-1 frame (default: from
        face_budget and the point spacing).
    """
    pts = check_points(points)
    if face_budget < 100:
        raise InvalidParameterError(f"face_budget={face_budget} is too small for a closed surface; use >= 100.")
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max())
    unit = (pts - centre) / radius
    r = gap_radius(unit)
    voxel = 2.0 / resolution if resolution else _voxel_for(unit, face_budget)
    for _ in range(4):  # coarsen the grid until the surface fits the budget
        field, origin, voxel = _grid_field(unit, voxel, max(r, 1.6 * voxel), thick=_THICK * voxel)
        mesh = _march(field, origin, voxel)
        if len(mesh.faces) <= face_budget or voxel >= _MAX_VOXEL:
            break
        voxel = min(_MAX_VOXEL, voxel * np.sqrt(len(mesh.faces) / face_budget) * 1.05)
    if len(mesh.faces) > face_budget:
        raise InvalidParameterError(
            f"The surface of these points needs {len(mesh.faces)} faces even on a coarse grid; raise face_budget.")
    if smooth:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=smooth)
    if not mesh.is_watertight:
        trimesh.repair.fill_holes(mesh)
    if not mesh.is_watertight:
        raise InvalidMeshError(
            "The mesh around these points is not closed; pass a denser cloud or a different face_budget.")
    if mesh.volume < 0:
        mesh.invert()
    mesh.apply_transform(_translate(centre) @ np.diag([radius, radius, radius, 1.0]))
    return unwrap_fast(mesh) if unwrap else mesh


def _translate(t: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def _voxel_for(unit: np.ndarray, face_budget: int) -> float:
    """Voxel size (radius-1 frame) matched to the point spacing, coarsened where the face budget demands it.

    The surface area comes from the sampling density (N points, median distance d to the 6th neighbour:
    area ~ N pi d² / 6); a finer grid than 0.6 x the spacing between points would only mesh sampling noise."""
    d, _ = cKDTree(unit).query(unit, k=min(7, len(unit)))
    area = len(unit) * np.pi * float(np.median(d[:, -1])) ** 2 / 6
    spacing = np.sqrt(area / len(unit))
    voxel = max(0.6 * spacing, np.sqrt(_FACES_PER_VOXEL_AREA * area / (0.8 * face_budget)))
    return float(np.clip(voxel, _MIN_VOXEL, _MAX_VOXEL))


def _march(field: np.ndarray, origin: float, voxel: float) -> trimesh.Trimesh:
    from skimage.measure import marching_cubes

    if field.max() <= 0:
        raise InvalidMeshError("These points enclose no volume on the grid; pass more points or a denser cloud.")
    verts, faces, _, _ = marching_cubes(field, level=0.0, allow_degenerate=False)
    mesh = trimesh.Trimesh(verts * voxel + origin, faces, process=True)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        sizes = np.array([len(p.faces) for p in parts])
        mesh = trimesh.util.concatenate([p for p, s in zip(parts, sizes) if s >= _DEBRIS * sizes.max()])
    return mesh


def is_closed(mesh: trimesh.Trimesh) -> bool:
    """Watertight once vertices at the same position are welded (UV seams split vertices, not the surface)."""
    welded = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    welded.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(welded.is_watertight)


def unwrap_fast(mesh: trimesh.Trimesh, resolution: int = 1024, padding: int = 4) -> trimesh.Trimesh:
    """`geometry.unwrap.unwrapped` with charts capped at 1/48 of the area: xatlas's chart growing costs grow
    faster than linearly with chart size (a 20k-face sphere: ~6 s as 6 charts, < 0.5 s as ~50)."""
    import xatlas

    atlas = xatlas.Atlas()
    # xatlas wants float32 vertices and uint32 faces; other dtypes can crash the process.
    atlas.add_mesh(np.ascontiguousarray(mesh.vertices, dtype=np.float32),
                   np.ascontiguousarray(mesh.faces, dtype=np.uint32))
    charts = xatlas.ChartOptions()
    charts.max_chart_area = float(mesh.area) / 48
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = resolution, padding, True
    atlas.generate(charts, pack)
    vmap, faces, uv = atlas[0]
    out = trimesh.Trimesh(mesh.vertices[vmap.astype(np.int64)], faces.astype(np.int64),
                          visual=trimesh.visual.TextureVisuals(uv=uv.astype(np.float64)), process=False)
    out.metadata.update(mesh.metadata)
    return out
