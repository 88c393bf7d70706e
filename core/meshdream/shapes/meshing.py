"""`points_to_mesh`: a closed, UV-unwrapped triangle mesh from a bare point cloud (generated or scanned).

The surface is a morphological closing of the points, computed on a voxel grid: splat the points, grow them by
a gap radius r that bridges the spaces between samples, flood the grid from its border (what the flood cannot
reach is solid, so no sampling gap lets the outside in), then take the level set at distance r - t from the
flooded region. Without the -t the closing would give back the points' own surface, which for a sheet thinner
than a voxel (a shelf board, a fin) has no inside at all; t keeps every part at least 2t thick. The field is
smoothed, meshed by marching cubes (closed by construction: the solid never touches the grid border), small
debris is dropped, Taubin smoothing removes the voxel steps without shrinking, a few rounds pull every vertex
back onto the points (undoing the offset t where the part is thick enough), and xatlas unwraps the result.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InvalidMeshError, InvalidParameterError
from .procedural import normalize

MIN_POINTS = 16
# Most faces of a generated shape's mesh: enough for its detail, and xatlas unwraps it in about a second.
FACE_BUDGET = 20_000
# A marching-cubes surface has about this many triangles per (voxel size)² of area; it sets the grid resolution.
_FACES_PER_VOXEL_AREA = 3.0
# Voxel size in units of the point spacing: finer grids only mesh sampling noise (and cost unwrap time).
_SPACING_VOXELS = 1.0
# Every part stays at least 2 x this many voxels thick (a board sampled on both faces keeps an inside).
_THICK = 1.0
_MIN_VOXEL, _MAX_VOXEL = 2.0 / 128, 2.0 / 20  # in units of the cloud's radius
# Components with fewer faces than this fraction of the largest are debris (stray points), not parts.
_DEBRIS = 0.08
# Vertices move onto this quantile of the normal offsets to their nearest points (the median resists noise).
_PULL_QUANTILE = 0.5


def check_points(points, name: str = "points") -> np.ndarray:
    """(N, 3) finite float64, N >= MIN_POINTS, not all at one spot; else an error saying what to fix."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{name} must be an (N, 3) array of numbers ({exc}).") from exc
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InvalidParameterError(
            f"{name} has shape {arr.shape}; pass an (N, 3) array of x, y, z rows (reshape(-1, 3) a flat array)."
        )
    if len(arr) < MIN_POINTS:
        raise InvalidParameterError(
            f"{name} has {len(arr)} points; at least {MIN_POINTS} are needed to recover a surface (2048 is typical)."
        )
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidParameterError(
            f"{name} has {int(bad.sum())} rows with NaN or infinite coordinates; drop them first "
            "(points[np.isfinite(points).all(1)])."
        )
    if np.ptp(arr, axis=0).max() <= 1e-12:
        raise InvalidParameterError(f"All {len(arr)} {name} are at one spot; a surface needs points spread in space.")
    return arr


def sampling_scale(unit: np.ndarray, max_points: int = 20000) -> tuple[float, float]:
    """(gap radius, surface area) of a cloud, from each point's distance d to its 6th neighbour (on at most
    `max_points` of them): the gap radius, the 95th percentile of d, bridges random sampling gaps yet ignores a
    few stray points; the area is N pi median(d)² / 6 (six neighbours within d at uniform density)."""
    if len(unit) > max_points:
        unit = unit[np.random.default_rng(0).choice(len(unit), max_points, replace=False)]
    d = cKDTree(unit).query(unit, k=min(7, len(unit)))[0][:, -1]
    return float(np.percentile(d, 95)), len(unit) * np.pi * float(np.median(d)) ** 2 / 6


def _grid_field(unit: np.ndarray, voxel: float, r: float, thick: float) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed closing field (> 0 inside) on a grid over the points' bounds plus a margin, and the grid's
    origin (the voxel [0, 0, 0] centre)."""
    pad = r + 4 * voxel
    origin = unit.min(0) - pad
    dims = np.ceil((unit.max(0) + pad - origin) / voxel).astype(np.int64) + 1
    ijk = np.rint((unit - origin) / voxel).astype(np.int64)
    occupied = np.zeros(dims, bool)
    occupied[tuple(ijk.T)] = True
    grown = ndimage.distance_transform_edt(~occupied) * voxel <= r
    labels, _ = ndimage.label(~grown)
    faces = (labels[[0, -1]], labels[:, [0, -1]], labels[..., [0, -1]])
    border = np.unique(np.concatenate([f.ravel() for f in faces]))
    outside = np.isin(labels, border[border > 0])
    depth = ndimage.distance_transform_edt(~outside) * voxel  # distance from the flooded outside
    return ndimage.gaussian_filter(depth - (r - thick), sigma=0.8), origin


def points_to_mesh(
    points,
    face_budget: int = FACE_BUDGET,
    unwrap: bool = True,
    smooth: int = 10,
    project: int = 3,
    resolution: int | None = None,
) -> trimesh.Trimesh:
    """A closed (watertight) mesh around `points` ((N, 3), any frame and scale; the mesh comes back in the same).

    face_budget: most triangles allowed; the grid is coarsened until the surface fits.
    unwrap: give the mesh an xatlas UV layout at once, ready to texture. Its vertices are then split along the
        UV seams, as in every textured mesh, so trimesh's `is_watertight` (which compares vertex indices) says
        False: check `is_closed(mesh)`. unwrap=False returns the welded mesh, whose `is_watertight` is True.
    smooth: Taubin smoothing iterations. project: rounds that pull the vertices back onto the points.
    resolution: voxels across the cloud's diameter (default: from the point spacing and face_budget).
    """
    pts = check_points(points)
    if face_budget < 100:
        raise InvalidParameterError(f"face_budget={face_budget} is too small for a closed surface; use >= 100.")
    centre = (pts.min(0) + pts.max(0)) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max())
    unit = (pts - centre) / radius
    gap, area = sampling_scale(unit)
    voxel = 2.0 / resolution if resolution else _voxel_for(area, min(len(unit), 20000), face_budget)
    for _ in range(5):  # coarsen the grid until the surface fits the budget
        field, origin = _grid_field(unit, voxel, max(gap, 1.6 * voxel), thick=_THICK * voxel)
        mesh = _march(field, origin, voxel)
        if len(mesh.faces) <= face_budget or voxel >= _MAX_VOXEL:
            break
        voxel = min(_MAX_VOXEL, voxel * np.sqrt(len(mesh.faces) / face_budget) * 1.05)
    if len(mesh.faces) > face_budget:
        raise InvalidParameterError(
            f"The surface of these points needs {len(mesh.faces)} faces even on the coarsest grid; raise face_budget."
        )
    if smooth:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=smooth)
    for _ in range(project):
        _pull_onto_points(mesh, unit, voxel)
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.53, iterations=2)
    if not mesh.is_watertight:  # marching cubes on a padded grid closes; this is a safety net
        trimesh.repair.fill_holes(mesh)
    if not mesh.is_watertight:
        raise InvalidMeshError(
            "The mesh around these points came out open; pass a denser cloud or another face_budget."
        )
    if mesh.volume < 0:
        mesh.invert()
    mesh.apply_transform(_translate(centre) @ np.diag([radius, radius, radius, 1.0]))
    mesh.metadata["points_to_mesh"] = {"points": len(pts), "voxel": voxel * radius, "closed": True}
    return unwrap_fast(mesh) if unwrap else mesh


def _pull_onto_points(mesh: trimesh.Trimesh, unit: np.ndarray, voxel: float, k: int = 8) -> None:
    """Move each vertex along its normal onto the sampled surface under it, undoing the closing's outward bias.

    The step is the _PULL_QUANTILE quantile (the median) of the normal offsets to the k nearest points, which
    resists sampling noise. No step may thin the part under it (measured by a ray cast
    through it) below half a voxel, so thin legs and boards keep their volume; outward steps are capped at
    half a voxel. Only positions change, so the mesh stays closed."""
    from ..geometry.raycast import RayCaster

    v, n = mesh.vertices, mesh.vertex_normals
    _, idx = cKDTree(unit).query(v, k=min(k, len(unit)))
    offset = np.einsum("vkc,vc->vk", v[:, None, :] - unit[idx], n)  # > 0: vertex above the point
    step = np.quantile(offset, _PULL_QUANTILE, axis=1)
    hits = RayCaster(mesh.triangles).cast(v - n * (1e-3 * voxel), -n)
    room = np.where(np.isfinite(hits.t), (hits.t - 0.5 * voxel) / 2, np.inf)  # both faces may move in
    step = np.clip(step, -0.5 * voxel, np.clip(room, 0, (_THICK + 1.0) * voxel))
    mesh.vertices = v - n * step[:, None]


def _translate(t: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def _voxel_for(area: float, n: int, face_budget: int) -> float:
    """Voxel size (radius-1 frame) matched to the spacing of n points over `area` (a finer grid would only mesh
    sampling noise), coarsened where the face budget demands it."""
    spacing = np.sqrt(area / n)
    voxel = max(_SPACING_VOXELS * spacing, np.sqrt(_FACES_PER_VOXEL_AREA * area / (0.8 * face_budget)))
    return float(np.clip(voxel, _MIN_VOXEL, _MAX_VOXEL))


def _march(field: np.ndarray, origin: np.ndarray, voxel: float) -> trimesh.Trimesh:
    from skimage.measure import marching_cubes

    if field.max() <= 0:
        raise InvalidMeshError("These points enclose no volume on the grid; pass more points or a denser cloud.")
    verts, faces, _, _ = marching_cubes(field, level=0.0, allow_degenerate=False)
    return drop_debris(trimesh.Trimesh(verts * voxel + origin, faces, process=True))


def drop_debris(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Without the components smaller than _DEBRIS of the largest (stray points, floaters), not parts."""
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    sizes = np.array([len(p.faces) for p in parts])
    return trimesh.util.concatenate([p for p, s in zip(parts, sizes) if s >= _DEBRIS * sizes.max()])


def finish_mesh(
    mesh: trimesh.Trimesh, face_budget: int = FACE_BUDGET, unwrap: bool = True, seed: int = 0
) -> trimesh.Trimesh:
    """Any shape model's raw mesh (y up) made like `points_to_mesh`'s, so texturing and saving don't care which
    model made it: welded, degenerate faces and debris dropped, holes filled; still open (or over face_budget), it
    is re-meshed from `seed`-ed surface samples by points_to_mesh, which closes by construction. Then outward
    facing, normalized like the training data (bounding box centred, farthest vertex at radius 1), unwrapped."""
    if len(mesh.faces) == 0:
        raise InvalidMeshError("The shape model made no surface; try another seed or prompt.")
    mesh = trimesh.Trimesh(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces), process=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    mesh = drop_debris(mesh)
    if not mesh.is_watertight:
        trimesh.repair.fill_holes(mesh)
    closed = mesh.is_watertight and len(mesh.faces) <= face_budget
    if not closed:
        samples, _ = trimesh.sample.sample_surface(mesh, 20_000, seed=seed)
        mesh = points_to_mesh(samples, face_budget=face_budget, unwrap=False)
    if mesh.volume < 0:
        mesh.invert()
    mesh.vertices = normalize(mesh.vertices)
    mesh.metadata["finish_mesh"] = {"remeshed": not closed, "closed": bool(mesh.is_watertight)}
    return unwrap_fast(mesh) if unwrap else mesh


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
    atlas.add_mesh(
        np.ascontiguousarray(mesh.vertices, dtype=np.float32), np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    )
    charts = xatlas.ChartOptions()
    charts.max_chart_area = float(mesh.area) / 48
    pack = xatlas.PackOptions()
    pack.resolution, pack.padding, pack.bilinear = resolution, padding, True
    atlas.generate(charts, pack)
    vmap, faces, uv = atlas[0]
    out = trimesh.Trimesh(
        mesh.vertices[vmap.astype(np.int64)],
        faces.astype(np.int64),
        visual=trimesh.visual.TextureVisuals(uv=uv.astype(np.float64)),
        process=False,
    )
    out.metadata.update(mesh.metadata)
    return out
