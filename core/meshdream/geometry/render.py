"""Ray-cast rendering of view maps (depth, normal, mask, UV, face id) and of textured images."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import trimesh

from ..errors import CameraError, InvalidMeshError
from .camera import Camera
from .meshdata import MeshData, interpolate, mesh_data
from .texture import as_float_image, sample_texture


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
    md = mesh_data(mesh)
    h, w = camera.height, camera.width
    # Directions keep unit depth (z = -1 in camera space), so the hit distance t is the depth itself.
    hits = md.caster.cast(camera.position, _ray_directions(camera))
    if require_visible and not (hits.face >= 0).any():
        raise CameraError(
            f"The camera at {np.round(camera.position, 3).tolist()} sees none of the mesh; point it at the mesh "
            "(orbit_cameras frames it automatically) or widen its field of view."
        )
    depth = np.where(hits.face >= 0, hits.t, np.nan).astype(np.float32)
    return ViewMaps(camera, depth.reshape(h, w), hits.face.reshape(h, w), hits.bary.reshape(h, w, 3), md)


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
