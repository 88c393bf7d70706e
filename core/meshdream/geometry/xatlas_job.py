"""One xatlas run, in this process or as a child process's script (`python xatlas_job.py in.npz out.npz`).

It imports numpy and xatlas only, so a child starts in a fraction of a second without loading MeshDream.
"""

from __future__ import annotations

import sys

import numpy as np


def generate(vertices: np.ndarray, faces: np.ndarray, options: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertex_map, faces, uv) of xatlas's layout. options: resolution, padding, and optionally
    max_boundary_length (chart cap, mesh units) and brute_force (slower packing that fills the atlas better)."""
    import xatlas

    atlas = xatlas.Atlas()
    # xatlas wants float32 vertices and uint32 faces; other dtypes can crash the process.
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
    chart = xatlas.ChartOptions()
    if options.get("max_boundary_length"):
        chart.max_boundary_length = float(options["max_boundary_length"])
    pack = xatlas.PackOptions()
    pack.resolution = int(options["resolution"])
    pack.padding = int(options["padding"])
    pack.bilinear = True
    pack.bruteForce = bool(options.get("brute_force", False))
    atlas.generate(chart, pack)
    vmap, new_faces, uv = atlas[0]
    return vmap.astype(np.int64), new_faces.astype(np.int64), uv.astype(np.float64)


def main(source: str, target: str) -> None:
    with np.load(source) as data:
        options = {k: data[k].item() for k in data.files if k not in ("vertices", "faces")}
        vmap, faces, uv = generate(data["vertices"], data["faces"], options)
    np.savez(target, vmap=vmap, faces=faces, uv=uv)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
