"""Texel-space maps of a UV-mapped mesh: which surface point each texel stands for, and the UV seams.

Rasterization is a ray cast too: the UV layout becomes a flat triangle mesh at z = 0, and one ray per texel
centre finds the triangle and barycentrics that cover it (Embree is far faster than numpy scan conversion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ..errors import InvalidMeshError
from .meshdata import MeshData, mesh_data
from .raycast import RayCaster
from .texture import check_texture_size


def _texel_centres_uv(size: int) -> np.ndarray:
    j, i = np.meshgrid(np.arange(size), np.arange(size))
    return np.stack([(j.ravel() + 0.5) / size, 1.0 - (i.ravel() + 0.5) / size], axis=-1)


def rasterize_uv(uv: np.ndarray, faces: np.ndarray, size: int, caster: RayCaster | None = None):
    """(face (S, S) int32 with -1 on empty texels, bary (S, S, 3) float32) of the UV layout at texel centres."""
    if caster is None:
        flat = np.concatenate([uv, np.zeros((len(uv), 1))], axis=1)[faces]
        caster = RayCaster(flat)
    origins = np.concatenate([_texel_centres_uv(size), np.ones((size * size, 1))], axis=1)
    hits = caster.cast(origins, np.broadcast_to(np.array([0.0, 0.0, -1.0]), origins.shape))
    return hits.face.reshape(size, size), hits.bary.reshape(size, size, 3)


@dataclass
class UVMaps:
    """Per-texel data at one texture size. Texels no triangle covers: face/chart -1, position/normal NaN."""

    size: int
    face: np.ndarray  # (S, S) int32
    bary: np.ndarray  # (S, S, 3) float32
    position: np.ndarray  # (S, S, 3) float32, surface point of the texel centre
    normal: np.ndarray  # (S, S, 3) float32, smooth normal
    chart: np.ndarray  # (S, S) int32
    seams: np.ndarray  # (K, 2) int64 flat texel indices on the two sides of UV seams (same surface point)

    @property
    def coverage(self) -> np.ndarray:
        """(S, S) bool: texels whose centre lies on the mesh's UV layout."""
        return self.face >= 0


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
    face, bary = rasterize_uv(md.uv, md.faces, size)
    covered = face >= 0
    f, b = face[covered], bary[covered]
    position = np.full((size, size, 3), np.nan, np.float32)
    normal = np.full((size, size, 3), np.nan, np.float32)
    chart = np.full((size, size), -1, np.int32)
    corners = md.faces[f]
    position[covered] = np.einsum("nk,nkc->nc", b, md.vertices[corners])
    n = np.einsum("nk,nkc->nc", b, md.vertex_normals[corners])
    normal[covered] = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    chart[covered] = md.face_chart[f]
    return UVMaps(size, face, bary, position, normal, chart, _seam_pairs(md, face, size))


def _seam_pairs(md: MeshData, face_map: np.ndarray, size: int) -> np.ndarray:
    """Pairs of texels on the two sides of every UV seam, found through mesh topology.

    A seam is a mesh edge (between welded positions) whose two faces use different UV coordinates for it. Points
    along the edge are sampled at half-texel spacing in both UV layouts, nudged half a texel into their own
    triangle, and the texels they land on are paired.
    """
    faces, pid = md.faces, md.position_id
    corner_a = faces.ravel()  # edge k of face f runs from corner k to corner k+1
    corner_b = faces[:, [1, 2, 0]].ravel()
    face_of = np.repeat(np.arange(len(faces)), 3)
    pa, pb = pid[corner_a], pid[corner_b]
    key = np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    ks = key[order]
    same = np.all(ks[1:] == ks[:-1], axis=1)
    # Manifold edges: exactly two half-edges share the key.
    first = np.flatnonzero(same & np.r_[True, ~same[:-1]] & np.r_[~same[1:], True])
    e1, e2 = order[first], order[first + 1]
    # Orient side 2 like side 1 (same welded start point).
    flip = pa[e1] != pa[e2]
    a1, b1 = corner_a[e1], corner_b[e1]
    a2 = np.where(flip, corner_b[e2], corner_a[e2])
    b2 = np.where(flip, corner_a[e2], corner_b[e2])
    uv = md.uv
    seam = (np.abs(uv[a1] - uv[a2]).max(1) > 1e-6) | (np.abs(uv[b1] - uv[b2]).max(1) > 1e-6)
    if not seam.any():
        return np.zeros((0, 2), np.int64)
    a1, b1, a2, b2 = a1[seam], b1[seam], a2[seam], b2[seam]
    f1, f2 = face_of[e1][seam], face_of[e2][seam]
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
