"""Ray-cast rendering of view maps (depth, normal, mask, UV, face id) and of textured images."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import trimesh

from ..errors import CameraError, InvalidMeshError
from .camera import Camera
from .meshdata import MeshData, mesh_data
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

    def _interpolate(self, per_vertex: np.ndarray, fill: float) -> np.ndarray:
        mask = self.mask
        out = np.full(mask.shape + per_vertex.shape[1:], fill, np.float32)
        corners = self._data.faces[self.face[mask]]
        out[mask] = np.einsum("nk,nkc->nc", self.bary[mask], per_vertex[corners])
        return out

    @cached_property
    def normal(self) -> np.ndarray:
        """(H, W, 3) float32 smooth world-space normal, unit length."""
        n = self._interpolate(self._data.vertex_normals, 0.0)
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)

    @cached_property
    def uv(self) -> np.ndarray:
        """(H, W, 2) float32 texture coordinates, NaN where the mesh has none."""
        if self._data.uv is None:
            return np.full(self.face.shape + (2,), np.nan, np.float32)
        return self._interpolate(self._data.uv, np.nan)


def render(mesh: trimesh.Trimesh, camera: Camera, require_visible: bool = True) -> ViewMaps:
    """Cast one ray through every pixel centre; Embree gives face, barycentrics and depth.

    Raises CameraError if the camera sees none of the mesh (unless `require_visible` is False).
    """
    md = mesh_data(mesh)
    h, w = camera.height, camera.width
    # Directions keep unit depth (z = -1 in camera space), so the hit distance t is the depth itself.
    hits = md.caster.cast(camera.position, camera.pixel_directions() @ camera.rotation)
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
