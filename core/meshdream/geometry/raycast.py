"""First-hit ray casting with Embree (the `embreex` binding trimesh uses for its fast ray intersector).

We call the scene directly rather than through `trimesh.ray`, because Embree already returns the hit face,
the barycentric coordinates and the distance: exactly what rendering needs, with no per-hit Python work.
Rays are cast in chunks of bounded size, spread over a thread pool: embreex releases the GIL while it traces
(measured here: 8 views of 512² rays take 0.15 s on one thread, 0.08 s on two), and the scene is committed on its
first query, which embreex does while still holding the GIL, so concurrent queries are safe.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 18  # most rays per Embree call: ~20 MB of temporaries per thread
MIN_CHUNK = 1 << 14  # fewer rays than this per thread are not worth a thread
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        """Cast N rays; `origins` and `directions` are (N, 3), or one row shared by every ray."""
        origins = np.asarray(origins, dtype=np.float32).reshape(-1, 3)
        directions = np.asarray(directions, dtype=np.float32).reshape(-1, 3)
        n = max(len(origins), len(directions))
        face = np.empty(n, np.int32)
        bary = np.empty((n, 3), np.float32)
        t = np.empty(n, np.float32)

        def run(s: int) -> None:
            e = min(s + step, n)
            o = origins[s:e] if len(origins) > 1 else np.broadcast_to(origins, (e - s, 3))
            d = directions[s:e] if len(directions) > 1 else directions  # embreex shares a single direction row
            r = self._scene.run(np.ascontiguousarray(o), np.ascontiguousarray(d), output=1)
            hit = r["geomID"] >= 0
            np.copyto(face[s:e], np.where(hit, r["primID"], -1))
            # Embree's (u, v) weight corners 1 and 2; corner 0 gets the rest.
            bary[s:e, 1] = r["u"]
            bary[s:e, 2] = r["v"]
            bary[s:e, 0] = 1.0 - r["u"] - r["v"]
            np.copyto(t[s:e], np.where(hit, r["tfar"], np.inf))

        step = min(CHUNK, max(MIN_CHUNK, -(-n // THREADS)))
        starts = range(0, n, step)
        if len(starts) == 1 or THREADS == 1:
            for s in starts:
                run(s)
        else:
            with ThreadPoolExecutor(min(THREADS, len(starts))) as pool:
                list(pool.map(run, starts))  # list() re-raises a worker's exception here
        return Hits(face, bary, t)
