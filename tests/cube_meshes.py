"""Cube OBJ files with hand-made UV layouts (materials, UDIM tiles) for the texture-page tests."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

# The cube's six faces as quads, corners counter-clockwise seen from outside.
QUADS = np.array(
    [
        [[1, -1, -1], [1, 1, -1], [1, 1, 1], [1, -1, 1]],
        [[-1, -1, 1], [-1, 1, 1], [-1, 1, -1], [-1, -1, -1]],
        [[-1, 1, -1], [-1, 1, 1], [1, 1, 1], [1, 1, -1]],
        [[-1, -1, 1], [-1, -1, -1], [1, -1, -1], [1, -1, 1]],
        [[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
        [[1, -1, -1], [-1, -1, -1], [-1, 1, -1], [1, 1, -1]],
    ],
    float,
)


def cube_obj(
    path: Path, origins: Sequence, size: float = 1.0, materials: Optional[Sequence[str]] = None, margin: float = 0.1
) -> Path:
    """Write a cube whose face k is mapped onto the square [origins[k], origins[k] + size] (shrunk by `margin` of
    its side on every edge), in `usemtl` group materials[k] (with an .mtl beside it) if given."""
    corner_uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) * (1 - 2 * margin) + margin
    lines = [f"mtllib {path.with_suffix('.mtl').name}"] if materials else []
    lines += ["v %g %g %g" % tuple(p) for p in QUADS.reshape(-1, 3)]
    lines += ["vt %.6f %.6f" % tuple(t) for k in range(6) for t in np.asarray(origins[k], float) + size * corner_uv]
    for k in range(6):
        if materials:
            lines.append(f"usemtl {materials[k]}")
        a = 4 * k + 1
        lines += [f"f {a}/{a} {a + 1}/{a + 1} {a + 2}/{a + 2}", f"f {a}/{a} {a + 2}/{a + 2} {a + 3}/{a + 3}"]
    if materials:
        path.with_suffix(".mtl").write_text(
            "".join(f"newmtl {m}\nKd 0.8 0.8 0.8\n\n" for m in dict.fromkeys(materials))
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def corners(mesh) -> np.ndarray:
    """(3F, 5) rows (x, y, z, u, v) of every face corner, sorted: equal for meshes with the same faces and UVs,
    whatever their vertex and face order."""
    rows = np.concatenate([mesh.vertices[mesh.faces], mesh.visual.uv[mesh.faces]], axis=2).reshape(-1, 5)
    return rows[np.lexsort(np.round(rows, 5).T[::-1])]
