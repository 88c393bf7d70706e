"""First-hit ray casting with Embree (the `embreex` binding trimesh uses for its fast ray intersector).

We call the scene directly rather than through `trimesh.ray`, because Embree already returns the hit face,
the barycentric coordinates and the distance: exactly what rendering needs, with no per-hit Python work.
Rays are cast in fixed-size chunks so memory stays bounded however many rays a caller asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 18  # rays per Embree call: ~20 MB of temporaries


@dataclass
class Hits:
    face: np.ndarray  # (N,) int32, -1 where the ray missed
    bary: np.ndarray  # (N, 3) float32 weights of the face's three corners
    t: np.ndarray  # (N,) float32 ray parameter (distance in units of the direction's length), inf on a miss


class RayCaster:
    """An Embree scene over fixed triangles (positions as float32, which is Embree's precision)."""

    def __init__(self, triangles: np.ndarray):
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        self._scene = rtcore_scene.EmbreeScene()
        # Keep a reference: Embree shares the buffer rather than copying it.
        self._triangles = np.ascontiguousarray(triangles, dtype=np.float32)
        TriangleMesh(self._scene, self._triangles)

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        n = len(directions)
        origins = np.broadcast_to(np.asarray(origins, dtype=np.float32), (n, 3))
        directions = np.asarray(directions, dtype=np.float32)
        face = np.empty(n, np.int32)
        bary = np.empty((n, 3), np.float32)
        t = np.empty(n, np.float32)
        for s in range(0, n, CHUNK):
            e = min(s + CHUNK, n)
            r = self._scene.run(np.ascontiguousarray(origins[s:e]), np.ascontiguousarray(directions[s:e]), output=1)
            hit = r["geomID"] >= 0
            face[s:e] = np.where(hit, r["primID"], -1)
            # Embree's (u, v) weight corners 1 and 2; corner 0 gets the rest.
            bary[s:e, 1] = r["u"]
            bary[s:e, 2] = r["v"]
            bary[s:e, 0] = 1.0 - r["u"] - r["v"]
            t[s:e] = np.where(hit, r["tfar"], np.inf)
        return Hits(face, bary, t)
