"""UV-space inpainting: fill texels no view saw and remove visible seams.

1. The mask (texels to fill, plus a band along UV seams) is filled, by a diffusion inpainting model when the
   generator can inpaint, else by a harmonic (Laplace) fill over the texel graph.
2. Colours are matched across seams: a harmonic solve over the seam band, on a graph whose edges join 4-neighbour
   texels of one chart and the texel pairs on both sides of each seam, so the two sides meet continuously.
3. Edge padding spreads the result into the gutters between charts.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
import trimesh
from scipy import ndimage
from scipy.sparse.linalg import cg

from ..errors import InvalidParameterError
from ..geometry import dilate, uv_maps
from ..geometry.texture import as_float_image
from ..progress import CancelToken, ProgressCallback, Reporter


def texel_graph(chart: np.ndarray, seams: np.ndarray) -> sp.csr_matrix:
    """Symmetric adjacency over flat texel indices: 4-neighbours within one chart, plus seam pairs."""
    s = chart.shape[0]
    idx = np.arange(s * s).reshape(s, s)
    rows, cols = [], []
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        ca, cb = chart.ravel()[a.ravel()], chart.ravel()[b.ravel()]
        ok = (ca >= 0) & (ca == cb)
        rows.append(a.ravel()[ok])
        cols.append(b.ravel()[ok])
    rows.append(seams[:, 0])
    cols.append(seams[:, 1])
    r, c = np.concatenate(rows), np.concatenate(cols)
    adj = sp.coo_matrix((np.ones(len(r), np.float32), (r, c)), shape=(s * s, s * s))
    return (adj + adj.T).tocsr()


def harmonic_fill(texture: np.ndarray, unknown: np.ndarray, graph: sp.csr_matrix, iterations: int = 400) -> np.ndarray:
    """Solve the graph Laplace equation on `unknown` texels with the other texels fixed (smoothest fill).

    Starts from the nearest-known colours and keeps a faint pull towards them, so texels with no path to a known
    texel stay defined.
    """
    flat = texture.reshape(-1, texture.shape[-1]).astype(np.float64)
    u = np.flatnonzero(unknown.ravel())
    if len(u) == 0:
        return texture.copy()
    start = dilate(texture, ~unknown).reshape(flat.shape)
    sub = graph[u]
    inside = sub[:, u]
    degree = np.asarray(sub.sum(axis=1)).ravel()
    eps = 1e-3
    lap = sp.diags(degree + eps) - inside
    known_flat = flat.copy()
    known_flat[u] = 0
    rhs_all = sub @ known_flat  # contributions of fixed neighbours
    out = flat.copy()
    for ch in range(flat.shape[1]):
        rhs = rhs_all[:, ch] + eps * start[u, ch]
        x, _ = cg(lap, rhs, x0=start[u, ch], maxiter=iterations, rtol=1e-6)
        out[u, ch] = x
    return out.reshape(texture.shape).astype(np.float32)


def seam_band(maps, width: int) -> np.ndarray:
    """(S, S) bool: covered texels within `width` texels of a seam."""
    s = maps.size
    marks = np.zeros(s * s, bool)
    marks[maps.seams.ravel()] = True
    marks = marks.reshape(s, s)
    if width > 1:
        marks = ndimage.binary_dilation(marks, iterations=width - 1)
    return marks & maps.coverage


def inpaint_uv(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    mask: np.ndarray,
    generator=None,
    prompt: str = "",
    seam_width: int = 2,
    padding: Optional[int] = None,
    steps: Optional[int] = None,
    seed: int = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """Fill `mask` texels ((S, S) bool, e.g. ~BakeResult.seen) and smooth UV seams; returns a new (S, S, 3) texture.

    generator: one with inpainting ability fills the mask with new content following `prompt`; without one (or
    if it cannot inpaint) the fill is harmonic. padding: texels of gutter padding (None: fill the whole gutter).
    """
    texture = as_float_image(texture, 3, "texture")
    size = texture.shape[0]
    mask = np.asarray(mask, bool)
    if texture.shape[:2] != (size, size) or mask.shape != (size, size):
        raise InvalidParameterError(
            f"Texture {texture.shape[:2]} and mask {mask.shape} must both be square and the same size."
        )
    report = Reporter(progress, cancel)
    report("inpaint", 0, 3, "texel graph")
    maps = uv_maps(mesh, size)
    graph = texel_graph(maps.chart, maps.seams)
    holes = mask & maps.coverage
    band = seam_band(maps, seam_width)
    if not (~holes & maps.coverage).any():
        raise InvalidParameterError("Every texel is masked: there is no known colour to inpaint from.")

    report("inpaint", 1, 3, "filling")
    filled = harmonic_fill(texture, holes, graph)
    if generator is not None and "inpaint" in generator.capabilities and holes.any():
        filled = _diffusion_fill(generator, filled, holes, prompt, steps, seed, report)
    report("inpaint", 2, 3, "matching seams")
    out = harmonic_fill(filled, band, graph) if band.any() else filled
    report("inpaint", 3, 3)
    return np.clip(dilate(out, maps.coverage, radius=padding), 0.0, 1.0)


def _diffusion_fill(generator, texture, holes, prompt, steps, seed, report) -> np.ndarray:
    """Inpaint the texture image at the model's native resolution; only masked texels are taken from it."""
    from ..generators import GenerationRequest, sample

    size = texture.shape[0]
    res = min(generator.native_resolution, size)
    res -= res % generator.latent_factor
    img = torch.from_numpy(texture).permute(2, 0, 1)[None]
    msk = torch.from_numpy(holes.astype(np.float32))[None, None]
    small = torch.nn.functional.interpolate(img, size=(res, res), mode="area")
    small_mask = (torch.nn.functional.interpolate(msk, size=(res, res), mode="area") > 0).float()
    request = GenerationRequest(
        prompts=[f"{prompt}, seamless texture" if prompt else "seamless texture"],
        init_images=small,
        inpaint_mask=small_mask,
        steps=steps or generator.default_steps,
        guidance=generator.default_guidance,
        seed=seed,
    )
    out = sample(generator, request)
    up = torch.nn.functional.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
    up = up[0].permute(1, 2, 0).numpy()
    result = texture.copy()
    result[holes] = up[holes]
    return result
