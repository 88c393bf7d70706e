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
    dist, (ri, ci) = ndimage.distance_transform_edt(~known, return_indices=True)
    fill = ~known
    if radius is not None:
        fill &= dist <= radius
    if where is not None:
        fill &= where
    out[fill] = texture[ri[fill], ci[fill]]
    return out
