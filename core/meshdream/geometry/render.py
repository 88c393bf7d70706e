"""Rendering of view maps (depth, normal, mask, UV, face id) and of textured images."""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np
import torch
import trimesh

from ..errors import CameraError, InvalidMeshError
from .camera import Camera
from .meshdata import MeshData, interpolate, mesh_data
from .raster import rasterize
from .texture import as_float_image, sample_texture

# Device types whose views are rasterized there (on the host, Embree's ray cast is the faster way).
RASTER_DEVICES = ("cuda",)


class ViewMaps:
    """What one camera sees. Background pixels: depth NaN, normal 0, uv NaN, face -1, mask False.

    Depth and face come straight from the ray cast; normal and uv are interpolated on first access, so callers
    that only need visibility (the bake) do not pay for them.
    """

    def __init__(self, camera: Camera, depth: np.ndarray, face: np.ndarray, bary: np.ndarray, data: MeshData):
        self.camera = camera
        self.depth = depth  # (H, W) float32, distance along the viewing axis
        self.face = face  # (H, W) int32
        self.bary = bary  # (H, W, 3) float32 barycentrics of the hit in its face
        self._data = data

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels that see the mesh."""
        return self.face >= 0

    @cached_property
    def _hits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row of each pixel among the hits, len(hits) for background; face and barycentrics of each hit).

        Attributes are interpolated at the hits only and spread over the image by one gather of those rows (a
        trailing fill row serves the background), cheaper than filling an image and scattering into it.
        """
        face = self.face.ravel()
        idx = np.flatnonzero(face >= 0)
        rows = np.full(face.size, len(idx), np.int32)
        rows[idx] = np.arange(len(idx), dtype=np.int32)
        return rows, face[idx], np.take(self.bary.reshape(-1, 3), idx, axis=0)

    def _image(self, per_corner: np.ndarray, fill: float, unit: bool = False) -> np.ndarray:
        """(H, W, C) image of per-corner values interpolated at the mesh pixels (`unit`: normalized), `fill`
        elsewhere."""
        rows, face, bary = self._hits
        values = np.empty((len(face) + 1, per_corner.shape[-1]), np.float32)
        interpolate(per_corner, face, bary, out=values[:-1])
        if unit:
            length = np.einsum("nc,nc->n", values[:-1], values[:-1])
            values[:-1] /= np.sqrt(np.maximum(length, 1e-24, out=length), out=length)[:, None]
        values[-1] = fill
        return np.take(values, rows, axis=0).reshape(self.face.shape + (-1,))

    @cached_property
    def normal(self) -> np.ndarray:
        """(H, W, 3) float32 smooth world-space normal, unit length."""
        return self._image(self._data.corner_normals, 0.0, unit=True)

    @cached_property
    def uv(self) -> np.ndarray:
        """(H, W, 2) float32 texture coordinates, NaN where the mesh has none."""
        if self._data.uv is None:
            return np.full(self.face.shape + (2,), np.nan, np.float32)
        return self._image(self._data.corner_uv, np.nan)


def _ray_directions(camera: Camera) -> np.ndarray:
    """(H*W, 3) float32 world-space directions through the pixel centres, unit depth along the view axis: what
    `camera.pixel_directions() @ camera.rotation` gives, built separably in float32 (2.5x faster at 512²)."""
    rot = camera.rotation.astype(np.float32)
    x = (np.arange(camera.width, dtype=np.float32) + 0.5 - camera.cx) / camera.fx
    y = (camera.cy - 0.5 - np.arange(camera.height, dtype=np.float32)) / camera.fy
    return (x[None, :, None] * rot[0] + (y[:, None, None] * rot[1] - rot[2])).reshape(-1, 3)


def render(mesh: trimesh.Trimesh, camera: Camera, require_visible: bool = True) -> ViewMaps:
    """Cast one ray through every pixel centre; Embree gives face, barycentrics and depth.

    Raises CameraError if the camera sees none of the mesh (unless `require_visible` is False).
    """
    return render_views(mesh, [camera], require_visible)[0]


def render_views(
    mesh: trimesh.Trimesh, cameras: Sequence[Camera], require_visible: bool = True, device=None
) -> list[ViewMaps]:
    """The maps of every camera. On a CUDA `device` (the model's) the views are rasterized there (raster.py: the
    ray cast's hits, in milliseconds instead of a host ray cast per view); elsewhere, and for a camera inside the
    mesh, Embree casts the rays.
    """
    md = mesh_data(mesh)
    gpu = device is not None and torch.device(device).type in RASTER_DEVICES
    triangles = torch.from_numpy(md.corner_positions).to(device) if gpu else None
    out = []
    for camera in cameras:
        drawn = rasterize(triangles, camera) if gpu else None
        if drawn is not None:
            face, bary, depth = (t.cpu().numpy() for t in drawn)
        else:
            # Directions keep unit depth (z = -1 in camera space), so the hit distance t is the depth itself.
            hits = md.caster.cast(camera.position, _ray_directions(camera))
            shape = (camera.height, camera.width)
            face, bary = hits.face.reshape(shape), hits.bary.reshape(shape + (3,))
            depth = np.where(face >= 0, hits.t.reshape(shape), np.nan).astype(np.float32)
        if require_visible and not (face >= 0).any():
            raise CameraError(
                f"The camera at {np.round(camera.position, 3).tolist()} sees none of the mesh; point it at the mesh "
                "(orbit_cameras frames it automatically) or widen its field of view."
            )
        out.append(ViewMaps(camera, depth, face, bary, md))
    return out


def render_texture(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    camera: Camera,
    background: float | tuple[float, float, float] = 0.0,
    maps: ViewMaps | None = None,
) -> np.ndarray:
    """(H, W, 3) float32 image of the mesh with `texture` (unlit albedo, bilinear lookup) over `background`."""
    texture = as_float_image(texture, 3, "texture")
    maps = render(mesh, camera) if maps is None else maps
    image = np.empty((camera.height, camera.width, 3), np.float32)
    image[:] = background
    if maps._data.uv is None:
        raise InvalidMeshError("The mesh has no UV coordinates to look the texture up with; load it with load_mesh().")
    mask = maps.mask
    image[mask] = sample_texture(texture, maps.uv[mask])
    return image
