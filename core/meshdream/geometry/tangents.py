"""MikkTSpace tangents: the tangent frame Blender, glTF viewers, Unreal and three.js decode normal maps with.

A tangent-space normal map only means what it was baked to mean when the viewer rebuilds the same tangent frame,
and MikkTSpace is the one every tool agrees on (glTF: "When tangents are not specified, client implementations
SHOULD calculate tangents using default MikkTSpace algorithms"). This is its algorithm, vectorized:

1. Each triangle's tangent is the direction of increasing u (dP/du), its handedness the sign of its UV area.
2. Face corners are welded where position, normal and UV are all equal; at each welded vertex the corners form
   groups, joined across shared edges between triangles of the same handedness.
3. A group's tangent is the sum of its triangles' tangents, each projected onto the plane of the vertex normal and
   weighted by the triangle's angle at the vertex, normalized; the bitangent is sign * cross(normal, tangent).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-20, n, 1.0)


def _project(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    return _unit(v - n * np.einsum("...c,...c->...", v, n)[..., None])


def mikktspace(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner MikkTSpace frames of a triangle mesh given per corner: positions (F, 3, 3), unit normals (F, 3, 3)
    and UVs (F, 3, 2). Returns (tangent (F, 3, 3) float32 unit vectors, sign (F, 3) float32 of +1 / -1): the
    bitangent is sign * cross(normal, tangent), as glTF's TANGENT.w and Blender's bitangent_sign say."""
    p = np.asarray(positions, np.float64)
    n = np.asarray(normals, np.float64)
    t = np.asarray(uvs, np.float64)
    f = len(p)
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    t21, t31 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    area = t21[:, 0] * t31[:, 1] - t21[:, 1] * t31[:, 0]
    sign = np.where(area > 0, 1.0, -1.0)
    face_tangent = _unit((t31[:, 1:2] * d1 - t21[:, 1:2] * d2) * sign[:, None])  # dP/du

    # Weld corners with equal position, normal and UV (MikkTSpace compares them exactly).
    keys = np.concatenate([p, n, t], axis=2).reshape(3 * f, 8)
    _, weld = np.unique(keys, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    # Half-edge k of face i runs from corner 3i+k to corner 3i+(k+1)%3; triangles are neighbours across an edge their
    # two half-edges run along in opposite directions, and their corners at its ends join when handedness agrees.
    start = np.arange(3 * f)
    end = (start // 3) * 3 + (start % 3 + 1) % 3
    a, b = weld[start], weld[end]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((a > b, hi, lo))
    same = (lo[order][1:] == lo[order][:-1]) & (hi[order][1:] == hi[order][:-1])
    e1, e2 = order[:-1][same], order[1:][same]
    ok = (a[e1] == b[e2]) & (b[e1] == a[e2]) & (sign[e1 // 3] == sign[e2 // 3])
    e1, e2 = e1[ok], e2[ok]
    links = np.concatenate([np.stack([start[e1], end[e2]], 1), np.stack([end[e1], start[e2]], 1)])
    graph = coo_matrix((np.ones(len(links), bool), (links[:, 0], links[:, 1])), shape=(3 * f, 3 * f))
    _, group = connected_components(graph, directed=False)

    # Each corner's share: its triangle's tangent in the plane of its normal, weighted by the corner angle there.
    nc = n.reshape(3 * f, 3)
    prev_p = p[:, [2, 0, 1]].reshape(3 * f, 3)
    next_p = p[:, [1, 2, 0]].reshape(3 * f, 3)
    here = p.reshape(3 * f, 3)
    e_prev, e_next = _project(prev_p - here, nc), _project(next_p - here, nc)
    angle = np.arccos(np.clip(np.einsum("nc,nc->n", e_prev, e_next), -1.0, 1.0))
    share = _project(np.repeat(face_tangent, 3, axis=0), nc) * angle[:, None]
    total = np.zeros((group.max() + 1, 3))
    np.add.at(total, group, share)
    tangent = _project(total[group], nc)
    # A frame without a tangent (degenerate UVs): any unit vector across the normal keeps the map decodable.
    bad = np.linalg.norm(tangent, axis=1) < 0.5
    if bad.any():
        axis = np.where(np.abs(nc[bad, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        tangent[bad] = _project(axis, nc[bad])
    return tangent.reshape(f, 3, 3).astype(np.float32), np.repeat(sign, 3).reshape(f, 3).astype(np.float32)
