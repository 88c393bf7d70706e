"""Texel-space maps of a UV-mapped mesh: which surface point each texel stands for, and the UV seams.

Rasterization is a ray cast too: the UV layout becomes a flat triangle mesh at z = 0, and one ray per texel
centre finds the triangle and barycentrics that cover it (Embree is far faster than numpy scan conversion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import trimesh
from scipy import ndimage

from ..errors import InvalidMeshError
from .meshdata import MeshData, interpolate, mesh_data
from .raycast import RayCaster
from .texture import check_texture_size


def rasterize_uv(uv: np.ndarray, faces: np.ndarray, size: int, caster: RayCaster | None = None):
    """(face (S, S) int32 with -1 on empty texels, bary (S, S, 3) float32) of the UV layout at texel centres."""
    if caster is None:
        flat = np.concatenate([uv, np.zeros((len(uv), 1))], axis=1)[faces]
        caster = RayCaster(flat)
    # Rays from z = 1 straight down through each texel centre, row-major with v = 1 in the top row.
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    origins = np.empty((size, size, 3), np.float32)
    origins[..., 0] = centres
    origins[..., 1] = 1.0 - centres[:, None]
    origins[..., 2] = 1.0
    hits = caster.cast(origins.reshape(-1, 3), np.array([0.0, 0.0, -1.0]))
    return hits.face.reshape(size, size), hits.bary.reshape(size, size, 3)


@dataclass
class UVMaps:
    """Per-texel data at one texture size. Texels no triangle covers: face/chart -1, position/normal NaN.

    `derived` holds what other modules compute once per mesh and size (e.g. inpainting's seam-band system).
    """

    size: int
    face: np.ndarray  # (S, S) int32
    bary: np.ndarray  # (S, S, 3) float32
    position: np.ndarray  # (S, S, 3) float32, surface point of the texel centre
    normal: np.ndarray  # (S, S, 3) float32, smooth normal
    chart: np.ndarray  # (S, S) int32
    seams: np.ndarray  # (K, 2) int64 flat texel indices on the two sides of UV seams (same surface point)
    derived: dict = field(default_factory=dict, repr=False)

    @property
    def coverage(self) -> np.ndarray:
        """(S, S) bool: texels whose centre lies on the mesh's UV layout."""
        return self.face >= 0

    @cached_property
    def gutter(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat index, nearest covered texel's flat index, distance to it) of every uncovered texel, so edge
        padding any texture of this size is a gather instead of a distance transform. Empty without coverage."""
        covered = self.coverage
        if not covered.any():
            return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
        texels = np.flatnonzero(~covered)
        ri, ci = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
        dr, dc = np.take(ri, texels), np.take(ci, texels)
        source = (dr * self.size + dc).astype(np.int32)
        r, c = np.divmod(texels, self.size)
        dist = np.sqrt(((dr - r) ** 2 + (dc - c) ** 2).astype(np.float32))
        texels = texels.astype(np.int32)
        return texels, source, dist


def require_uvs(mesh: trimesh.Trimesh) -> None:
    """For work on a texture the mesh already has (restyle, upscale): without UVs the texture has no place on the
    mesh, and unwrapping would make new UVs that the texture does not fit."""
    if mesh_data(mesh).uv is None:
        raise InvalidMeshError(
            "The mesh has no UV map, so its texture has no place on it; pass the mesh with the UVs the texture was "
            "painted on (load_mesh(path, unwrap='never') keeps a file's own)."
        )


def uv_maps(mesh: trimesh.Trimesh, size: int) -> UVMaps:
    """Texel position/normal/chart/coverage maps and seam pairs; cached per mesh and size."""
    size = check_texture_size(size)
    md = mesh_data(mesh)
    if md.uv is None:
        raise InvalidMeshError("The mesh has no UV coordinates; load it with meshdream.load_mesh(), which unwraps it.")
    if size not in md._uv_maps:
        md._uv_maps[size] = _build(md, size)
    return md._uv_maps[size]


def _build(md: MeshData, size: int) -> UVMaps:
    face, bary = rasterize_uv(md.uv, md.faces, size, md.uv_caster)
    idx = np.flatnonzero(face >= 0)
    f, b = face.ravel()[idx], np.take(bary.reshape(-1, 3), idx, axis=0)
    position = np.full((size * size, 3), np.nan, np.float32)
    normal = np.full((size * size, 3), np.nan, np.float32)
    chart = np.full(size * size, -1, np.int32)
    position[idx] = interpolate(md.corner_positions, f, b)
    n = interpolate(md.corner_normals, f, b)
    normal[idx] = n / np.maximum(np.sqrt(np.einsum("nc,nc->n", n, n)), 1e-12)[:, None]
    chart[idx] = md.face_chart[f]
    return UVMaps(
        size,
        face,
        bary,
        position.reshape(size, size, 3),
        normal.reshape(size, size, 3),
        chart.reshape(size, size),
        _seam_pairs(md, face, size),
    )


def _seam_pairs(md: MeshData, face_map: np.ndarray, size: int) -> np.ndarray:
    """Pairs of texels on the two sides of every UV seam, found through mesh topology.

    A seam is a mesh edge (between welded positions) whose two faces use different UV coordinates for it. Points
    along the edge are sampled at half-texel spacing in both UV layouts, nudged half a texel into their own
    triangle, and the texels they land on are paired.
    """
    a1, b1, f1, a2, b2, f2 = md.seam_edges
    if not len(a1):
        return np.zeros((0, 2), np.int64)
    faces, uv = md.faces, md.uv
    length = np.maximum(np.linalg.norm(uv[b1] - uv[a1], axis=1), np.linalg.norm(uv[b2] - uv[a2], axis=1)) * size
    counts = np.ceil(2 * length).astype(np.int64) + 1
    idx = np.repeat(np.arange(len(counts)), counts)
    t = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) / np.repeat(counts - 1, counts)
    t = t[:, None]

    def texels(a, b, f):
        p = uv[a[idx]] * (1 - t) + uv[b[idx]] * t
        toward = uv[faces[f[idx]]].mean(axis=1) - p
        step = np.minimum(0.5 / size, np.linalg.norm(toward, axis=1, keepdims=True))
        p = p + toward / np.maximum(np.linalg.norm(toward, axis=1, keepdims=True), 1e-12) * step
        col = np.clip((p[:, 0] * size).astype(np.int64), 0, size - 1)
        row = np.clip(((1 - p[:, 1]) * size).astype(np.int64), 0, size - 1)
        return row * size + col

    s1, s2 = texels(a1, b1, f1), texels(a2, b2, f2)
    flat = face_map.ravel()
    keep = (flat[s1] >= 0) & (flat[s2] >= 0) & (s1 != s2)
    return np.unique(np.stack([s1[keep], s2[keep]], axis=1), axis=0)
