"""Bake view images into a UV texture: a texel-centric gather with visibility and view-angle weights.

Every covered texel is projected into every view. A view contributes where the texel faces the camera and is
not hidden: each of the four bilinear neighbours of the projected point is used only if the surface that pixel
shows lies on the texel's own tangent plane (its rendered depth matches the depth the plane predicts along that
pixel's ray) and on the texel's own UV chart. That test is tight on every surface (no fixed depth tolerance to
tune between leaks and lost grazing views) and stops colour bleeding between surfaces that touch. Views are
blended with weight cos(angle)^power times the valid bilinear support, or the best view alone is kept.

The gather is built once (`BakeOperator`): a list of (texel, view pixel, bilinear support, cosine) entries. Any
view-angle power is a reweighting of the same entries, and baking new images from the same cameras, as
synchronized texturing does at every denoising step, is one gather and one scatter-add. It is built and applied
with torch on any device, so on a GPU the per-step bake never leaves the GPU.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Literal, Optional, Sequence

import numpy as np
import torch
import trimesh

from ..errors import InvalidParameterError
from ..progress import CancelToken, ProgressCallback, Reporter
from ..tensors import to_device
from .camera import Camera
from .meshdata import mesh_data
from .padding import dilate
from .render import ViewMaps, render
from .texture import as_float_image
from .uvmaps import uv_maps

BakeMode = Literal["blend", "best"]
# Rendered and predicted depth may differ by this fraction of the depth (float32 round-off and curvature
# between a texel's triangle and its neighbour's); hidden surfaces are much further away than that.
DEPTH_TOLERANCE = 2e-3


@dataclass
class BakeResult:
    """A baked texture and what the bake knew of each texel; every array is (S, S, ...) in the texture's OBJ row
    order (v = 0 at the bottom), S the texture size.

    texture: (S, S, C) float32, C the view images' channels: the weighted blend (or, mode "best", the best view) of
        the view pixels that saw each texel. Unseen texels are 0, except texels off the UV layout within `padding`
        of a seen one, which copy it, so bilinear and mip-mapped lookups at chart borders do not pull in black.
    weight: (S, S) float32 summed view weights (cos(angle)^power times bilinear pixel support); 0 where no view saw
        the texel, the confidence later steps (inpainting, blending runs) go by.
    best_cos: (S, S) float32 cosine between the texel's normal and the direction to the most frontal view that saw
        it, 0 if none: how squarely it has been seen (sequential painting decides keep / refine from it).
    coverage: (S, S) bool, texels whose centre lies on the UV layout; the rest is gutter.
    """

    texture: np.ndarray
    weight: np.ndarray
    best_cos: np.ndarray
    coverage: np.ndarray

    @property
    def seen(self) -> np.ndarray:
        """(S, S) bool, texels some view saw: the ones inpainting keeps."""
        return self.weight > 0


@dataclass(eq=False)
class BakeOperator:
    """Gather from the stacked pixels of a fixed set of views to the covered texels of one texture size.

    Entries are torch tensors on the device the operator was built on; `reweighted` gives the same gather at
    another view-angle power or mode without projecting anything again.
    """

    size: int
    shapes: list[tuple[int, int]]  # (H, W) of each view
    texels: np.ndarray  # (N,) flat indices of covered texels
    coverage: np.ndarray  # (S, S) bool
    rows: torch.Tensor  # (E,) int64 index into `texels` of each entry
    cols: torch.Tensor  # (E,) int64 index into the stacked pixels of all views
    support: torch.Tensor  # (E,) float32 bilinear weight of the pixel (times the view's mask)
    cos: torch.Tensor  # (E,) float32 cosine between the texel's normal and the direction to the camera
    view: torch.Tensor  # (E,) int64 view of each entry
    power: float = 6.0
    mode: BakeMode = "blend"

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def reweighted(self, power: Optional[float] = None, mode: Optional[BakeMode] = None) -> "BakeOperator":
        """The same gather with another view-angle power or mode (weights are recomputed lazily, once); the same
        power and mode give this operator itself, with the weights and matrix it already built."""
        power, mode = self.power if power is None else power, mode or self.mode
        _check(power, mode)
        if (power, mode) == (self.power, self.mode):
            return self
        return dataclasses.replace(self, power=power, mode=mode)

    def select(self, view: int, mask: Optional[np.ndarray] = None) -> "BakeOperator":
        """The gather of one of the views alone, optionally limited by a per-pixel mask in [0, 1] (an (H, W) array,
        or a tensor of H*W values: what sequential texturing lets each new view paint), without projecting anything
        again."""
        h, w = self.shapes[view]
        offset = sum(a * b for a, b in self.shapes[:view])
        keep = torch.nonzero(self.view == view).squeeze(1)
        cols = self.cols[keep] - offset
        support = self.support[keep]
        if isinstance(mask, torch.Tensor):
            support = support * mask.reshape(-1).to(self.device, torch.float32)[cols]
        elif mask is not None:
            m = as_float_image(mask, 1, f"mask of view {view}")[..., 0]
            support = support * torch.from_numpy(m.ravel()).to(self.device)[cols]
        return dataclasses.replace(
            self,
            shapes=[(h, w)],
            rows=self.rows[keep],
            cols=cols,
            support=support,
            cos=self.cos[keep],
            view=torch.zeros_like(keep),
        )

    @cached_property
    def _weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-entry blend weight, rows summing to 1 where seen; per-texel summed view weight)."""
        n = len(self.texels)
        w = self.support * self.cos.pow(self.power)
        if self.mode == "best":
            n_views = len(self.shapes)
            per_view = torch.zeros(n * n_views, device=self.device).index_add_(0, self.rows * n_views + self.view, w)
            best = per_view.view(n, n_views).argmax(dim=1)
            w = torch.where(self.view == best[self.rows], w, torch.zeros((), device=self.device))
        total = torch.zeros(n, device=self.device).index_add_(0, self.rows, w)
        return w / total.clamp_min(1e-30)[self.rows], total

    @cached_property
    def _matrix(self) -> torch.Tensor:
        """Sparse CSR (N, sum H*W) of the blend weights (entries are texel-major, so rows come sorted)."""
        counts = torch.bincount(self.rows, minlength=len(self.texels))
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        size = (len(self.texels), sum(h * w for h, w in self.shapes))
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta": CSR @ dense is all we use
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, self.cols, self._weights[0], size=size)

    @property
    def texel_weight(self) -> torch.Tensor:
        """(N,) float32 summed view weights of the covered texels, on the operator's device."""
        return self._weights[1]

    @cached_property
    def texel_best_cos(self) -> torch.Tensor:
        """(N,) float32 cosine of the most frontal view that saw each covered texel (0 if none), on the device."""
        out = torch.zeros(len(self.texels), device=self.device)
        cos = torch.where(self.support > 0, self.cos, torch.zeros((), device=self.device))
        return out.scatter_reduce_(0, self.rows, cos, "amax")

    @property
    def weight(self) -> np.ndarray:
        return self.texel_weight.cpu().numpy()

    @property
    def best_cos(self) -> np.ndarray:
        return self.texel_best_cos.cpu().numpy()

    def built(self) -> "BakeOperator":
        """This operator with its gather matrix built now (building reads sizes back from the device, so a loop
        that must not wait on the device builds it beforehand)."""
        self._matrix
        return self

    def gather(self, pixels: torch.Tensor) -> torch.Tensor:
        """(sum H*W, C) float32 stacked view pixels on the operator's device -> (N, C) baked covered texels."""
        return self._matrix @ pixels

    def apply(self, images: Sequence[np.ndarray], padding: int = 4) -> BakeResult:
        """Bake one image per view (same order and sizes as the cameras) into a texture."""
        if len(images) != len(self.shapes):
            raise InvalidParameterError(
                f"Got {len(images)} images for {len(self.shapes)} cameras; give one per camera."
            )
        stacked = []
        for k, (img, shape) in enumerate(zip(images, self.shapes)):
            img = as_float_image(img, name=f"image of view {k}")
            if img.shape[:2] != shape:
                raise InvalidParameterError(
                    f"Image of view {k} is {img.shape[1]}x{img.shape[0]} pixels but its camera renders "
                    f"{shape[1]}x{shape[0]}; resize the image or the camera."
                )
            stacked.append(img.reshape(-1, img.shape[-1]))
        channels = {s.shape[1] for s in stacked}
        if len(channels) != 1:
            raise InvalidParameterError(f"All view images need the same number of channels, got {sorted(channels)}.")
        s = self.size
        pixels = torch.from_numpy(np.concatenate(stacked)).to(self.device)
        flat = np.zeros((s * s, channels.pop()), np.float32)
        flat[self.texels] = self.gather(pixels).cpu().numpy()
        weight = np.zeros(s * s, np.float32)
        weight[self.texels] = self.weight
        best = np.zeros(s * s, np.float32)
        best[self.texels] = self.best_cos
        texture, weight = flat.reshape(s, s, -1), weight.reshape(s, s)
        if padding:
            texture = dilate(texture, weight > 0, radius=padding, where=~self.coverage)
        return BakeResult(texture, weight, best.reshape(s, s), self.coverage)


def _check(power: float, mode: str) -> None:
    if mode not in ("blend", "best"):
        raise InvalidParameterError(f"Bake mode {mode!r} is unknown; use 'blend' or 'best'.")
    if power < 0:
        raise InvalidParameterError(f"View-angle power {power} must be >= 0 (4 to 8 works best).")


def bake_operator(
    mesh: trimesh.Trimesh,
    cameras: Sequence[Camera],
    texture_size: int,
    masks: Optional[Sequence[Optional[np.ndarray]]] = None,
    power: float = 6.0,
    mode: BakeMode = "blend",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    maps: Optional[Sequence[ViewMaps]] = None,
    device: str | torch.device | None = None,
) -> BakeOperator:
    """Build the gather for `cameras` (optional per-view masks in [0, 1] limit what each view may paint).

    maps: the cameras' ViewMaps if the caller rendered them already (saves the ray casts); device: where the
    projection runs and the operator lives (default CPU; a generator's device keeps per-step bakes there).
    """
    _check(power, mode)
    if not cameras:
        raise InvalidParameterError("No views to bake; give at least one (camera, image) pair.")
    report = Reporter(progress, cancel)
    dev = torch.device(device or "cpu")
    uvm = uv_maps(mesh, texture_size)
    md = mesh_data(mesh)
    texels = np.flatnonzero(uvm.coverage.ravel())

    put = partial(to_device, device=dev)

    chart, depth, weight = [], [], []
    for v, cam in enumerate(cameras):
        report("bake", v, len(cameras), "projecting views")
        vm = render(mesh, cam, require_visible=False) if maps is None else maps[v]
        # Per-pixel tables padded by one background pixel all round, so every bilinear tap has an entry and
        # background or off-image taps fail the chart test without a bounds check.
        chart.append(np.pad(np.where(vm.face >= 0, md.face_chart[np.maximum(vm.face, 0)], -1), 1, constant_values=-1))
        depth.append(np.pad(np.nan_to_num(vm.depth, nan=np.inf), 1, constant_values=np.inf))
        if masks is not None and masks[v] is not None:
            weight.append(np.pad(as_float_image(masks[v], 1, f"mask of view {v}")[..., 0], 1))
        elif masks is not None:
            weight.append(np.pad(np.ones(vm.face.shape, np.float32), 1))
    flat = [put(np.concatenate([a.ravel() for a in tables])) if tables else None for tables in (chart, depth, weight)]
    views = _Views(cameras, *flat, put)
    texel = _Texels(
        position=put(uvm.position.reshape(-1, 3)[texels]),
        normal=put(uvm.normal.reshape(-1, 3)[texels]),
        face_normal=put(md.face_normals[uvm.face.ravel()[texels]].astype(np.float32)),
        chart=put(uvm.chart.ravel()[texels]),
    )
    chunk = max(1, CHUNK_PAIRS // len(cameras))
    parts = [_project(texel, views, s, min(s + chunk, len(texels))) for s in range(0, len(texels), chunk)]
    report("bake", len(cameras), len(cameras), "blending")
    rows, cols, support, cos, view = (torch.cat(a) for a in zip(*parts))
    return BakeOperator(
        size=uvm.size,
        shapes=[(c.height, c.width) for c in cameras],
        texels=texels,
        coverage=uvm.coverage,
        rows=rows,
        cols=cols,
        support=support,
        cos=cos,
        view=view,
        power=power,
        mode=mode,
    )


# Texel-view pairs projected at once: bounds the temporaries (~40 bytes a pair, x4 for the bilinear taps).
CHUNK_PAIRS = 1 << 21


@dataclass
class _Texels:
    position: torch.Tensor  # (N, 3) surface point of each covered texel
    normal: torch.Tensor  # (N, 3) smooth normal
    face_normal: torch.Tensor  # (N, 3) normal of the texel's triangle
    chart: torch.Tensor  # (N,) UV chart


class _Views:
    """All cameras as tensors, and their padded per-pixel chart / depth / mask tables, view after view."""

    def __init__(self, cameras: Sequence[Camera], chart, depth, weight, put):
        self.rotation = put(np.stack([c.rotation for c in cameras]).astype(np.float32))  # (V, 3, 3)
        self.translation = put(np.stack([c.world_to_camera[:3, 3] for c in cameras]).astype(np.float32))
        self.position = put(np.stack([c.position for c in cameras]).astype(np.float32))  # (V, 3) in the world
        intr = np.array([[c.fx, c.fy, c.cx, c.cy, c.width, c.height] for c in cameras], np.float32)
        self.fx, self.fy, self.cx, self.cy, self.width, self.height = put(intr.T.copy())  # each (V,)
        sizes = np.array([c.width * c.height for c in cameras])
        padded = np.array([(c.width + 2) * (c.height + 2) for c in cameras])
        self.offset = put(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))  # into the images
        self.padded_offset = put(np.concatenate([[0], np.cumsum(padded)[:-1]]).astype(np.int64))  # into the tables
        self.chart, self.depth, self.weight = chart, depth, weight  # weight None: no masks


def _take(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """a[index] along the first axis for an index of any shape (index_select is several times faster on CPU)."""
    return a.index_select(0, index.reshape(-1)).view(*index.shape, *a.shape[1:])


def _project(t: _Texels, v: _Views, start: int, stop: int) -> tuple[torch.Tensor, ...]:
    """Entries of texels start..stop in every view, texel-major: each texel's bilinear taps in each view that sees
    it. All views of a texel chunk are projected in one batch, so entries come out sorted by texel."""
    n_views = len(v.fx)
    pos, fn, nrm = t.position[start:stop], t.face_normal[start:stop], t.normal[start:stop]
    p_all = (torch.einsum("kc,vdc->kvd", pos, v.rotation) + v.translation).reshape(-1, 3)  # (K*V, 3)
    depth = -p_all[:, 2].view(-1, n_views)
    px = v.fx * p_all[:, 0].view(-1, n_views) / depth + v.cx
    py = -v.fy * p_all[:, 1].view(-1, n_views) / depth + v.cy
    # Dot products are the same in the world and in camera space: the face plane's signed distance from each
    # camera, n . (p - c), needs no rotated normals. Negative: the camera is on the front side of the face.
    plane_all = (fn * pos).sum(1, keepdim=True) - fn @ v.position.T  # (K, V)
    valid = (plane_all < 0) & (depth > 0) & (px >= 0) & (px < v.width) & (py >= 0) & (py < v.height)
    pair = torch.nonzero(valid.view(-1)).squeeze(1)  # texel-major (k * V + view)
    k, vi = pair // n_views, pair % n_views
    p_cam = _take(p_all, pair)
    n_cam = (_take(v.rotation, vi) @ _take(fn, k)[:, :, None])[..., 0]  # face normals of the pairs, camera space
    to_camera = ((_take(nrm, k) * _take(v.position, vi)).sum(1) - _take((nrm * pos).sum(1), k)) / p_cam.norm(dim=1)
    cos = to_camera.clamp(1e-3, 1.0)
    plane = _take(plane_all.view(-1), pair)[:, None]
    fx, fy, cx, cy, w = (_take(a, vi)[:, None] for a in (v.fx, v.fy, v.cx, v.cy, v.width))
    gx, gy = _take(px.view(-1), pair)[:, None] - 0.5, _take(py.view(-1), pair)[:, None] - 0.5
    x0, y0 = gx.floor(), gy.floor()  # x0 in [-1, W - 1], y0 in [-1, H - 1]
    ax, ay = gx - x0, gy - y0
    # The four bilinear neighbours as one (M, 4) batch: (dx, dy) = (0, 0), (1, 0), (0, 1), (1, 1).
    dx = torch.tensor([0.0, 1.0, 0.0, 1.0], device=pos.device)
    dy = torch.tensor([0.0, 0.0, 1.0, 1.0], device=pos.device)
    xi, yi = x0 + dx, y0 + dy
    bw = torch.where(dx > 0, ax, 1 - ax) * torch.where(dy > 0, ay, 1 - ay)
    tab = (_take(v.padded_offset, vi)[:, None] + ((yi + 1) * (w + 2) + xi + 1).long()).view(-1)
    ok = _take(v.chart, tab).view(-1, 4) == _take(t.chart[start:stop], k)[:, None]
    # Depth where this pixel's ray (unit depth: z = -1) meets the texel's tangent plane.
    denom = n_cam[:, :1] * (xi + 0.5 - cx) / fx - n_cam[:, 1:2] * (yi + 0.5 - cy) / fy - n_cam[:, 2:]
    predicted = plane / denom
    ok &= (_take(v.depth, tab).view(-1, 4) - predicted).abs() <= DEPTH_TOLERANCE * predicted
    if v.weight is not None:
        bw = bw * _take(v.weight, tab).view(-1, 4)
    entry = torch.nonzero((ok & (bw > 0)).view(-1)).squeeze(1)
    m = entry // 4
    pix = (
        _take(v.offset, _take(vi, m))
        + (_take(yi.view(-1), entry) * _take(w.view(-1), m) + _take(xi.view(-1), entry)).long()
    )
    return start + _take(k, m), pix, _take(bw.view(-1), entry), _take(cos, m), _take(vi, m)


def bake(
    mesh: trimesh.Trimesh,
    views: Sequence[tuple],
    texture_size: int,
    power: float = 6.0,
    mode: BakeMode = "blend",
    padding: int = 4,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    maps: Optional[Sequence[ViewMaps]] = None,
    device: str | torch.device | None = None,
) -> BakeResult:
    """Bake (camera, image) or (camera, image, mask) views into a (texture_size²) texture; see the module doc.

    maps and device: as in bake_operator."""
    for k, view in enumerate(views):
        if not isinstance(view, (tuple, list)) or len(view) not in (2, 3) or not isinstance(view[0], Camera):
            raise InvalidParameterError(f"View {k} must be a (Camera, image) or (Camera, image, mask) tuple.")
    cameras = [v[0] for v in views]
    masks = [v[2] if len(v) == 3 else None for v in views]
    op = bake_operator(mesh, cameras, texture_size, masks, power, mode, progress, cancel, maps, device)
    return op.apply([v[1] for v in views], padding=padding)
