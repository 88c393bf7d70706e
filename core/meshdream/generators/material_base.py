"""The MaterialModel interface itself (see material_models.py): kept apart from the loader, so that material models
(built-in, Marigold) can implement it without importing the module that loads them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InvalidParameterError
from ..progress import CancelToken, ProgressCallback

MAP_NAMES = ("base_color", "roughness", "metallic", "normal")


@dataclass
class MaterialViews:
    """Per-view estimates, V views of H x W pixels, float32; values off the mask are ignored.

    roughness, metallic: (V, H, W) in [0, 1] (glTF's perceptual roughness and metalness).
    normal: (V, H, W, 3) unit surface *detail* in the view's camera frame (x right, y up, z toward the camera)
        for a surface that faces the camera: (0, 0, 1) is no detail. Texturing rotates it onto each pixel's
        rendered geometric normal, so only surface detail lands in the normal map. None: flat.
    albedo: (V, H, W, 3) de-lit base colour in [0, 1] where the model makes one (intrinsics models), else None.
    """

    roughness: np.ndarray
    metallic: np.ndarray
    normal: Optional[np.ndarray] = None
    albedo: Optional[np.ndarray] = None


class MaterialModel(ABC):
    """Estimates materials from rendered views of a base colour texture, or from the texture itself."""

    name: str = "material model"
    makes_albedo: bool = False  # True: estimate() returns albedo, so texturing can de-light (delight=True)
    # True: the model reads the texture itself, as one view in which every texel faces the camera in its tangent
    # frame (x along u, y along v), so it sees each texel at the texture's own resolution and its normals are the
    # tangent-space normal map as they come (normal maps are drawn in texel units). False: it reads rendered views
    # (photographic models), whose estimates are baked back with the base colour's cameras and weights.
    reads_texture: bool = False

    @abstractmethod
    def estimate(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        normals: np.ndarray,
        prompt: str = "",
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
    ) -> MaterialViews:
        """images: (V, H, W, 3) float32 in [0, 1], the base colour seen by each view (unlit); masks: (V, H, W)
        bool, pixels on the mesh; normals: (V, H, W, 3) rendered geometric unit normals in the same camera
        frame as MaterialViews.normal; prompt: the texture's prompt (a model may use what it names)."""


def check_material_views(views: MaterialViews, shape: tuple[int, int, int]) -> MaterialViews:
    """The model's output, checked against the (V, H, W) asked for, as float32: a wrong shape is the model's bug,
    named here rather than deep in a bake."""
    want = {"roughness": shape, "metallic": shape, "normal": (*shape, 3), "albedo": (*shape, 3)}
    for name, expected in want.items():
        value = getattr(views, name)
        if value is None:
            continue
        value = np.asarray(value, np.float32)
        if value.shape != expected:
            raise InvalidParameterError(f"The material model gave {name} of shape {value.shape}; expected {expected}.")
        setattr(views, name, value)
    return views
