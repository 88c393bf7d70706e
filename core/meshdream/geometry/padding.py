"""Edge padding: spread known texels outwards so bilinear filtering and mip-maps never pick up gutter colour."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dilate(
    texture: np.ndarray, known: np.ndarray, radius: float | None = None, where: np.ndarray | None = None
) -> np.ndarray:
    """Copy of `texture` where unknown texels take the colour of the nearest known texel (a Voronoi fill).

    radius: only texels at most this many texels from known ones are filled (None: all).
    where: optional (S, S) bool limiting which unknown texels may be filled (e.g. the gutter between charts).
    """
    out = texture.copy()
    if not known.any():
        return out
    # Only the nearest-texel indices come from the transform: its full distance image costs more than the
    # distances of the filled texels alone.
    ri, ci = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    w = known.shape[1]
    fill = np.flatnonzero(~known if where is None else ~known & where)
    sr, sc = np.take(ri, fill), np.take(ci, fill)
    if radius is not None:
        r, c = np.divmod(fill, w)
        near = (sr - r) ** 2 + (sc - c) ** 2 <= radius**2
        fill, sr, sc = fill[near], sr[near], sc[near]
    flat = texture.reshape(known.size, -1)
    out.reshape(known.size, -1)[fill] = np.take(flat, sr * w + sc, axis=0)
    return out
