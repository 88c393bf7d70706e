"""A large test mesh made on the spot (nothing to download): a scan-like closed surface without UVs."""

from __future__ import annotations

import numpy as np
import trimesh


def blob(grid: int = 154) -> trimesh.Trimesh:
    """A bumpy closed surface from marching cubes, like a scan: small even triangles, no UVs. Faces grow with
    grid²: 154 gives 124,620 (the issue's 124k), 70 about 25k."""
    from skimage import measure

    g = np.linspace(-1.3, 1.3, grid, dtype=np.float32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    field = np.sqrt(x**2 + (1.3 * y) ** 2 + z**2) - 1.0
    field += 0.12 * np.sin(5 * x) * np.sin(4 * y + 1) * np.sin(6 * z + 2) + 0.05 * np.sin(13 * x + 7 * z)
    vertices, faces, _, _ = measure.marching_cubes(field, 0.0, spacing=(float(g[1] - g[0]),) * 3)
    return trimesh.Trimesh(vertices, faces, process=False)
