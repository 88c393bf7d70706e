"""Per-view conditioning for texturing: depth images, object masks and direction-aware prompts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import trimesh

from ..errors import CameraError, MeshDreamWarning
from ..geometry import Camera, ViewMaps, render_views
from ..geometry.meshdata import mesh_data
from ..images import depth_to_image

# Words that keep generated views free of baked-in lighting (albedo only).
LIGHTING_NEGATIVE = "shadow, highlight, reflection, glare, strong light, dark, blurry"


def direction_word(camera: Camera, up=(0.0, 1.0, 0.0), front=(0.0, 0.0, 1.0)) -> str:
    """ "front", "side", "back", "top" or "bottom" view, from where the camera looks at the mesh."""
    back = camera.rotation[2]  # unit vector from the scene towards the camera
    up, front = np.asarray(up, float), np.asarray(front, float)
    elevation = np.degrees(np.arcsin(np.clip(back @ up, -1, 1)))
    if elevation > 60:
        return "top"
    if elevation < -60:
        return "bottom"
    flat = back - up * (back @ up)
    azimuth = np.degrees(np.arccos(np.clip(flat @ front / max(np.linalg.norm(flat), 1e-9), -1, 1)))
    return "front" if azimuth < 45 else "back" if azimuth > 135 else "side"


def view_prompts(prompt: str, cameras: Sequence[Camera], directions: bool = True) -> list[str]:
    return [f"{prompt}, {direction_word(c)} view" if directions else prompt for c in cameras]


@dataclass
class ViewSet:
    cameras: list[Camera]
    maps: list[ViewMaps]
    prompts: list[str]
    depth: torch.Tensor  # (B, 1, H, W) normalized depth: near 1, far 0.2, background 0 (the ControlNet convention)
    normal: Optional[torch.Tensor]  # (B, 3, H, W) camera-space normals, 0 on the background; None if unused


def prepare_views(
    mesh: trimesh.Trimesh,
    cameras: Sequence[Camera],
    prompt: str,
    directions: bool = True,
    normals: bool = True,
    require_visible: bool = True,
    device=None,
) -> ViewSet:
    """Render every camera once (on the model's `device` if it is a GPU, see render_views); normals only for
    generators that use them (`Generator.uses_normals`).

    require_visible: a camera that sees none of the mesh is the caller's mistake (CameraError). Without it (cameras
    MeshDream chose itself), a view that sees no front of any face could paint nothing: it is dropped with a
    MeshDreamWarning rather than stopping the job.
    """
    maps = render_views(mesh, cameras, require_visible, device)
    if not require_visible:
        keep = [k for k, (c, m) in enumerate(zip(cameras, maps)) if _sees_front(mesh, c, m)]
        if not keep:
            raise CameraError("None of the views sees the front of any face of the mesh; pass cameras that do.")
        if len(keep) < len(cameras):
            dropped = [np.round(cameras[k].position, 3).tolist() for k in range(len(cameras)) if k not in keep]
            warnings.warn(
                f"Dropped {len(dropped)} of {len(cameras)} views that see no front of the mesh (cameras at {dropped}).",
                MeshDreamWarning,
                stacklevel=2,
            )
        cameras, maps = [cameras[k] for k in keep], [maps[k] for k in keep]
    depth = torch.from_numpy(np.stack([depth_to_image(m.depth) for m in maps]))[:, None]
    normal = None
    if normals:
        camera_space = np.stack([m.normal @ c.rotation.T for c, m in zip(cameras, maps)]).astype(np.float32)
        normal = torch.from_numpy(camera_space).permute(0, 3, 1, 2)
    return ViewSet(list(cameras), maps, view_prompts(prompt, cameras, directions), depth, normal)


def _sees_front(mesh: trimesh.Trimesh, camera: Camera, maps: ViewMaps) -> bool:
    """Whether the camera is on the front side of any face it sees (the bake uses front sides only)."""
    md = mesh_data(mesh)
    facing = np.einsum("fc,fc->f", md.face_normals, camera.position - md.triangles[:, 0]) > 0
    return bool(facing[maps.face[maps.mask]].any())


def to_images(batch: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) tensor -> list of (H, W, C) float32 arrays."""
    return list(batch.detach().float().cpu().permute(0, 2, 3, 1).numpy())
