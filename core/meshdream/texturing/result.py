"""What texturing returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import Camera


@dataclass
class TextureResult:
    texture: np.ndarray  # (S, S, 3) float32 in [0, 1], OBJ convention, unseen texels inpainted (except "project")
    weight: np.ndarray  # (S, S) float32 bake confidence; 0 where no generated view saw the texel
    views: list[tuple[Camera, np.ndarray]]  # the generated view images (H, W, 3)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: "model", "geometry", "total"
    strategy: str = "sync"
