"""Bake view images into a UV texture: a texel-centric gather with visibility and view-angle weights.

Every covered texel is projected into every view. A view contributes where the texel faces the camera and is
not hidden: each of the four bilinear neighbours of the projected point is used only if the surface that pixel
shows lies on the texel's own tangent plane (its rendered depth matches the depth the plane predicts along that
pixel's ray) and on the texel's own UV chart. That test is tight on every surface (no fixed depth tolerance to
tune between leaks and lost grazing views) and stops colour bleeding between surfaces that touch. Views are
blended with weight cos(angle)^power times the valid bilinear support, or the best view alone is kept.

The gather is built once as a sparse matrix from all view pixels to texels (`BakeOperator`), so baking new
images from the same cameras, as synchronized texturing does at every denoising step, is one sparse product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import trimesh

from ..errors import InvalidParameterError
from ..progress import CancelToken, ProgressCallback, Reporter
from .camera import Camera
from .meshdata import mesh_data
from .padding import dilate
from .render import render
from .texture import as_float_image
from .uvmaps import uv_maps

BakeMode = Literal["blend", "best"]
# Rendered and predicted depth may differ by this fraction of the depth (float32 round-off and curvature
# between a texel's triangle and its neighbour's); hidden surfaces are much further away than that.
DEPTH_TOLERANCE = 2e-3


@dataclass
class BakeResult:
    texture: np.ndarray  # (S, S, C) float32; unseen texels 0, gutters edge-padded
    weight: np.ndarray  # (S, S) float32 summed view weights, 0 where no view saw the texel
    best_cos: np.ndarray  # (S, S) float32 cosine of the most frontal view that saw the texel, 0 if none
    coverage: np.ndarray  # (S, S) bool texels on the UV layout

    @property
    def seen(self) -> np.ndarray:
        return self.weight > 0


@dataclass
class BakeOperator:
    """Sparse gather from the stacked pixels of a fixed set of views to the covered texels of one texture size."""

    size: int
    shapes: list[tuple[int, int]]  # (H, W) of each view
    texels: np.ndarray  # (N,) flat indices of covered texels
    matrix: sp.csr_matrix  # (N, sum H*W), rows sum to 1 where seen, 0 otherwise
    weight: np.ndarray  # (N,) float32
    best_cos: np.ndarray  # (N,) float32
    coverage: np.ndarray  # (S, S) bool

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
        flat = np.zeros((s * s, channels.pop()), np.float32)
        flat[self.texels] = self.matrix @ np.concatenate(stacked)
        weight = np.zeros(s * s, np.float32)
        weight[self.texels] = self.weight
        best = np.zeros(s * s, np.float32)
        best[self.texels] = self.best_cos
        texture, weight = flat.reshape(s, s, -1), weight.reshape(s, s)
        if padding:
            texture = dilate(texture, weight > 0, radius=padding, where=~self.coverage)
        return BakeResult(texture, weight, best.reshape(s, s), self.coverage)


def bake_operator(
    mesh: trimesh.Trimesh,
    cameras: Sequence[Camera],
    texture_size: int,
    masks: Optional[Sequence[Optional[np.ndarray]]] = None,
    power: float = 6.0,
    mode: BakeMode = "blend",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> BakeOperator:
    """Build the gather for `cameras` (optional per-view masks in [0, 1] limit what each view may paint)."""
    if mode not in ("blend", "best"):
        raise InvalidParameterError(f"Bake mode {mode!r} is unknown; use 'blend' or 'best'.")
    if not cameras:
        raise InvalidParameterError("No views to bake; give at least one (camera, image) pair.")
    if power < 0:
        raise InvalidParameterError(f"View-angle power {power} must be >= 0 (4 to 8 works best).")
    report = Reporter(progress, cancel)
    maps = uv_maps(mesh, texture_size)
    md = mesh_data(mesh)
    covered = maps.coverage.ravel()
    texels = np.flatnonzero(covered)
    # float32 throughout: texel positions are float32 already and this loop is memory-bound.
    pos = maps.position.reshape(-1, 3)[texels]
    nrm = maps.normal.reshape(-1, 3)[texels]
    tex_face = maps.face.ravel()[texels]
    fnrm = md.face_normals[tex_face].astype(np.float32)
    chart = maps.chart.ravel()[texels]

    rows, cols, vals, view_of = [], [], [], []
    n_views = len(cameras)
    view_weight = np.zeros((len(texels), n_views), np.float32)
    view_cos = np.zeros((len(texels), n_views), np.float32)
    offset = 0
    for v, cam in enumerate(cameras):
        report("bake", v, n_views, "projecting views")
        vm = render(mesh, cam, require_visible=False)
        mask = None if masks is None or masks[v] is None else as_float_image(masks[v], 1, f"mask of view {v}")[..., 0]
        h, w = cam.height, cam.width
        rot = cam.rotation.astype(np.float32)
        p_all = pos @ rot.T + cam.world_to_camera[:3, 3].astype(np.float32)
        depth = -p_all[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            px = cam.fx * p_all[:, 0] / depth + cam.cx
            py = -cam.fy * p_all[:, 1] / depth + cam.cy
        # Front-facing (camera on the positive side of the face plane) and inside the image.
        n_all = fnrm @ rot.T
        front = np.einsum("nc,nc->n", n_all, p_all) < 0
        idx = np.flatnonzero(front & (depth > 0) & (px >= 0) & (px < w) & (py >= 0) & (py < h))
        p_cam, n_cam = p_all[idx], n_all[idx]
        cos = np.clip(-np.einsum("nc,nc->n", nrm[idx] @ rot.T, p_cam) / np.linalg.norm(p_cam, axis=1), 1e-3, 1.0)
        plane = np.einsum("nc,nc->n", n_cam, p_cam)
        gx, gy = px[idx] - 0.5, py[idx] - 0.5
        x0, y0 = np.floor(gx).astype(np.int32), np.floor(gy).astype(np.int32)
        fx, fy = gx - x0, gy - y0
        support = np.zeros(len(idx), np.float32)
        entries = []
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                bw = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
                ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (bw > 0)
                pix = np.clip(yi, 0, h - 1) * w + np.clip(xi, 0, w - 1)
                face = vm.face.ravel()[pix]
                ok &= face >= 0
                ok &= md.face_chart[np.maximum(face, 0)] == chart[idx]
                # Depth where this pixel's ray (unit depth: z = -1) meets the texel's tangent plane.
                denom = (
                    n_cam[:, 0] * (xi + 0.5 - cam.cx) / cam.fx
                    - n_cam[:, 1] * (yi + 0.5 - cam.cy) / cam.fy
                    - n_cam[:, 2]
                )
                with np.errstate(divide="ignore", invalid="ignore"):
                    predicted = plane / denom
                ok &= np.abs(vm.depth.ravel()[pix] - predicted) <= DEPTH_TOLERANCE * predicted
                if mask is not None:
                    bw = bw * mask.ravel()[pix]
                bw = np.where(ok, bw, np.float32(0))
                support += bw
                entries.append((pix, bw))
        seen = support > 0
        view_weight[idx, v] = np.where(seen, cos**power * support, 0.0)
        view_cos[idx, v] = np.where(seen, cos, 0.0)
        for pix, bw in entries:
            keep = bw > 0
            rows.append(idx[keep].astype(np.int32))
            cols.append((offset + pix[keep]).astype(np.int64))
            vals.append((bw[keep] * cos[keep] ** power).astype(np.float32))
            view_of.append(np.full(keep.sum(), v, np.int32))
        offset += h * w
    report("bake", n_views, n_views, "blending")

    rows, cols, vals, view_of = (np.concatenate(a) for a in (rows, cols, vals, view_of))
    if mode == "best":
        best = np.argmax(view_weight, axis=1)
        keep = view_of == best[rows]
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        view_weight = np.take_along_axis(view_weight, best[:, None], axis=1)
    total = np.bincount(rows, weights=vals, minlength=len(texels))
    vals = (vals / total[rows]).astype(np.float32)
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(texels), offset))
    return BakeOperator(
        size=maps.size,
        shapes=[(c.height, c.width) for c in cameras],
        texels=texels,
        matrix=matrix,
        weight=view_weight.sum(axis=1).astype(np.float32),
        best_cos=view_cos.max(axis=1),
        coverage=maps.coverage,
    )


def bake(
    mesh: trimesh.Trimesh,
    views: Sequence[tuple],
    texture_size: int,
    power: float = 6.0,
    mode: BakeMode = "blend",
    padding: int = 4,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> BakeResult:
    """Bake (camera, image) or (camera, image, mask) views into a (texture_size²) texture; see the module doc."""
    for k, view in enumerate(views):
        if not isinstance(view, (tuple, list)) or len(view) not in (2, 3) or not isinstance(view[0], Camera):
            raise InvalidParameterError(f"View {k} must be a (Camera, image) or (Camera, image, mask) tuple.")
    cameras = [v[0] for v in views]
    masks = [v[2] if len(v) == 3 else None for v in views]
    op = bake_operator(mesh, cameras, texture_size, masks, power, mode, progress, cancel)
    return op.apply([v[1] for v in views], padding=padding)
