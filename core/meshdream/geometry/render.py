"""Ray-cast rendering of view maps (depth, normal, mask, UV, face id) and of textured images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ..errors import CameraError, InvalidMeshError
from .camera import Camera
from .meshdata import mesh_data
from .texture import as_float_image, sample_texture


@dataclass
class ViewMaps:
    """What one camera sees. Background pixels: depth NaN, normal 0, uv NaN, face -1, mask False."""

    camera: Camera
    depth: np.ndarray  # (H, W) float32, distance along the viewing axis
    normal: np.ndarray  # (H, W, 3) float32, smooth world-space normal, unit length
    mask: np.ndarray  # (H, W) bool
    uv: np.ndarray  # (H, W, 2) float32, NaN where the mesh has no UVs
    face: np.ndarray  # (H, W) int32


def render(mesh: trimesh.Trimesh, camera: Camera, require_visible: bool = True) -> ViewMaps:
    """Cast one ray through every pixel centre; Embree gives face and barycentrics, the rest is interpolation.

    Raises CameraError if the camera sees none of the mesh (unless `require_visible` is False).
    """
    md = mesh_data(mesh)
    h, w = camera.height, camera.width
    dirs_cam = camera.pixel_directions()
    # Directions keep unit depth (z = -1 in camera space), so the hit distance t is the depth itself.
    hits = md.caster.cast(camera.position, dirs_cam @ camera.rotation)
    face = hits.face
    mask = face >= 0
    if require_visible and not mask.any():
        raise CameraError(
            f"The camera at {np.round(camera.position, 3).tolist()} sees none of the mesh; point it at the mesh "
            "(orbit_cameras frames it automatically) or widen its field of view."
        )
    f, b = face[mask], hits.bary[mask]
    depth = np.full(h * w, np.nan, np.float32)
    depth[mask] = hits.t[mask]
    normal = np.zeros((h * w, 3), np.float32)
    n = np.einsum("nk,nkc->nc", b, md.vertex_normals[md.faces[f]])
    normal[mask] = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    uv = np.full((h * w, 2), np.nan, np.float32)
    if md.uv is not None:
        uv[mask] = np.einsum("nk,nkc->nc", b, md.uv[md.faces[f]])
    return ViewMaps(
        camera,
        depth.reshape(h, w),
        normal.reshape(h, w, 3),
        mask.reshape(h, w),
        uv.reshape(h, w, 2),
        face.reshape(h, w),
    )


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
    if np.isnan(maps.uv[maps.mask]).any():
        raise InvalidMeshError("The mesh has no UV coordinates to look the texture up with; load it with load_mesh().")
    image[maps.mask] = sample_texture(texture, maps.uv[maps.mask])
    return image
