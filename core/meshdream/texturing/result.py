"""What texturing returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import Camera


@dataclass
class TextureResult:
    # (S, S, 3) float32 in [0, 1], OBJ convention, unseen texels inpainted (except "project"); with pages (below),
    # their atlas (meshdream.geometry.pages), to which `weight` refers too.
    texture: np.ndarray
    weight: np.ndarray  # (S, S) float32 bake confidence; 0 where no generated view saw the texel
    views: list[tuple[Camera, np.ndarray]]  # the generated view images (H, W, 3)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: "model", "geometry", "total"
    strategy: str = "sync"
    # One (texture_size², 3) image per page where the texture has pages (materials with per_material, UDIM tiles),
    # keyed by material name or tile ("1001", ...); empty otherwise. save_textured takes it in place of `texture`.
    textures: dict[str, np.ndarray] = field(default_factory=dict)
