"""UV-space inpainting: fill texels no view saw and remove visible seams.

1. The mask (texels to fill, plus a band along UV seams) is filled, by a diffusion inpainting model when the
   generator can inpaint, else by a harmonic (Laplace) fill over the texel graph.
2. Colours are matched across seams: a harmonic solve over the seam band, on a graph whose edges join 4-neighbour
   texels of one chart and the texel pairs on both sides of each seam, so the two sides meet continuously.
3. Edge padding spreads the result into the gutters between charts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Optional

import numpy as np
import scipy.sparse as sp
import torch
import trimesh
from scipy import ndimage
from scipy.sparse.linalg import cg, splu
from scipy.spatial import cKDTree

from ..errors import InvalidParameterError
from ..geometry import uv_maps
from ..geometry.texture import as_float_image
from ..progress import CancelToken, ProgressCallback, Reporter

EPS = 1e-3  # faint pull towards the start colours, so texels with no path to a known texel stay defined
# Unknown texels solved exactly by sparse LU (one factorization for all channels, ~50 ms at 30k texels); LU fill
# grows too fast beyond this (a 1000² hole: 7.5 s, 1.8 GB), so larger sets use CG from the start colours.
DIRECT_LIMIT = 200_000


@dataclass
class LaplaceSystem:
    """The graph Laplace equation on a set of unknown texels with every other texel fixed: the smoothest fill.

    The texel graph joins 4-neighbours of one chart and the texel pairs on both sides of each seam. Each unknown
    texel also keeps a faint pull (EPS) towards its start colour, the colour of its nearest known texel.
    """

    texels: np.ndarray  # (U,) sorted flat indices of the unknown texels
    matrix: sp.csc_matrix  # (U, U) degree + EPS minus the edges among unknown texels
    boundary: sp.csr_matrix  # (U, S*S) edges from unknown to fixed texels
    source: np.ndarray  # (U,) flat index of the texel whose colour each unknown texel starts from

    @cached_property
    def _lu(self):
        return splu(self.matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})

    def solve(self, texture: np.ndarray) -> np.ndarray:
        """Copy of the (S, S, C) `texture` with the unknown texels filled."""
        out = texture.copy()
        flat = out.reshape(-1, out.shape[-1])
        start = flat[self.source].astype(np.float64)
        rhs = self.boundary @ flat + EPS * start
        if len(self.texels) <= DIRECT_LIMIT:
            flat[self.texels] = self._lu.solve(rhs)
        else:
            for ch in range(flat.shape[1]):
                flat[self.texels, ch] = cg(self.matrix, rhs[:, ch], x0=start[:, ch], maxiter=400, rtol=1e-6)[0]
        return out


def laplace_system(maps, unknown: np.ndarray) -> LaplaceSystem:
    """The system for the (S, S) bool `unknown` texels (at least one) of `maps`, built from their own edges only:
    no S²-sized graph is formed."""
    s = maps.size
    u = np.flatnonzero(unknown)
    chart = maps.chart.ravel()
    r, c = np.divmod(u, s)
    rows, cols = [], []
    for step, inside in ((1, c < s - 1), (-1, c > 0), (s, r < s - 1), (-s, r > 0)):
        i = np.flatnonzero(inside)
        nb = u[i] + step
        same = (chart[nb] == chart[u[i]]) & (chart[nb] >= 0)
        rows.append(i[same])
        cols.append(nb[same])
    a, b = np.concatenate([maps.seams, maps.seams[:, ::-1]]).T  # seam edges, both directions
    on = np.isin(a, u)
    rows.append(np.searchsorted(u, a[on]))
    cols.append(b[on])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    pos = np.minimum(np.searchsorted(u, cols), len(u) - 1)
    inner = u[pos] == cols
    n = len(u)
    among = sp.coo_matrix((np.ones(inner.sum()), (rows[inner], pos[inner])), shape=(n, n))
    matrix = (sp.diags(np.bincount(rows, minlength=n) + EPS) - among).tocsc()
    # float32 like the textures it multiplies (a float64 matrix would make scipy copy the whole texture).
    boundary = sp.csr_matrix((np.ones((~inner).sum(), np.float32), (rows[~inner], cols[~inner])), shape=(n, s * s))
    return LaplaceSystem(u, matrix, boundary, _nearest_known(maps, unknown, u))


def _nearest_known(maps, unknown: np.ndarray, texels: np.ndarray) -> np.ndarray:
    """Flat index of the nearest known texel (covered, not `unknown`) of each of `texels` (themselves if none).

    Gutter texels never serve: they hold no surface colour (a bake leaves them black). The nearest texel of a set
    has a 4-neighbour outside it (a step towards the query point would be nearer otherwise), so a k-d tree over
    those rim texels answers exactly, with work in proportion to the rim rather than to a distance transform of
    the whole texture.
    """
    s = maps.size
    known = maps.coverage & ~unknown
    rim = np.flatnonzero(known & ~ndimage.binary_erosion(known, border_value=1))
    if len(rim) == 0:
        return texels
    _, nearest = cKDTree(np.stack(np.divmod(rim, s), axis=1)).query(np.stack(np.divmod(texels, s), axis=1))
    return rim[nearest]


def seam_band(maps, width: int) -> np.ndarray:
    """(S, S) bool: covered texels within `width` texels of a seam."""
    s = maps.size
    marks = np.zeros(s * s, bool)
    marks[maps.seams.ravel()] = True
    marks = marks.reshape(s, s)
    if width > 1:
        marks = ndimage.binary_dilation(marks, iterations=width - 1)
    return marks & maps.coverage


def seam_system(maps, width: int) -> Optional[LaplaceSystem]:
    """The seam band's Laplace system (None without seams): it depends only on the mesh, the size and the width,
    so it is built once and kept with the UV maps."""
    key = ("seam band system", width)
    if key not in maps.derived:
        band = seam_band(maps, width)
        maps.derived[key] = laplace_system(maps, band) if band.any() else None
    return maps.derived[key]


def prepare_uv_inpainting(mesh: trimesh.Trimesh, size: int, seam_width: int = 2) -> None:
    """Build what `inpaint_uv` needs for this mesh and size ahead of time (UV maps, gutter, the seam system and its
    factorization), e.g. while a GPU denoises."""
    maps = uv_maps(mesh, size)
    maps.gutter
    seams = seam_system(maps, seam_width)
    if seams is not None and len(seams.texels) <= DIRECT_LIMIT:
        seams._lu


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
):
    """Fill `mask` texels ((S, S) bool, e.g. ~BakeResult.seen) and smooth UV seams; returns a new (S, S, 3) texture.

    generator: one with inpainting ability fills the mask with new content following `prompt`; without one (or
    if it cannot inpaint) the fill is harmonic. padding: texels of gutter padding (None: fill the whole gutter).
    texture may also be a dict of PBR maps (TextureResult.maps) or a TextureResult with maps: the base colour is
    filled as above, roughness and metallic harmonically, masked normals made flat, and the same kind comes back.
    """
    if isinstance(texture, Mapping) or hasattr(texture, "maps"):
        from .materials import for_maps, inpaint_maps

        options = dict(
            generator=generator,
            prompt=prompt,
            seam_width=seam_width,
            padding=padding,
            steps=steps,
            seed=seed,
            progress=progress,
            cancel=cancel,
        )
        return for_maps(texture, lambda maps: inpaint_maps(mesh, maps, mask, **options), whole=True)
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
    holes = mask & maps.coverage
    if not (~holes & maps.coverage).any():
        raise InvalidParameterError("Every texel is masked: there is no known colour to inpaint from.")
    seams = seam_system(maps, seam_width)

    report("inpaint", 1, 3, "filling")
    filled = laplace_system(maps, holes).solve(texture) if holes.any() else texture
    if generator is not None and "inpaint" in generator.capabilities and holes.any():
        filled = _diffusion_fill(generator, filled, holes, prompt, steps, seed, report)
    report("inpaint", 2, 3, "matching seams")
    out = filled.copy() if seams is None else seams.solve(filled)
    report("inpaint", 3, 3)
    texels, source, dist = maps.gutter
    if padding is not None:
        near = dist <= padding
        texels, source = texels[near], source[near]
    flat = out.reshape(-1, 3)
    flat[texels] = flat[source]
    return np.clip(out, 0.0, 1.0, out=out)


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
