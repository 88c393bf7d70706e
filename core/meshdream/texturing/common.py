"""Shared steps of the texturing strategies: the job settings, timing, the final bake and fill."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import numpy as np
import trimesh

from ..geometry import BakeResult, bake
from ..progress import CancelToken, ProgressCallback
from .inpaint import inpaint_uv
from .views import LIGHTING_NEGATIVE


@dataclass
class Settings:
    prompt: str
    texture_size: int
    seed: int
    steps: int
    guidance: float
    negative_prompt: str = LIGHTING_NEGATIVE
    bake_power: float = 6.0
    inpaint_generator: object = None  # fills unseen texels in UV space; None: harmonic fill
    reference_image: object = None  # (1, 3, H, W) tensor for generators with an IP-Adapter
    progress: Optional[ProgressCallback] = None
    cancel: Optional[CancelToken] = None


class Timer:
    """Accumulates wall time per stage ("model" vs "geometry") so benchmarks can split the cost. Stages nest: time
    in an inner stage (geometry inside a denoising step) is not also counted for the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [stage, time it last (re)started]

    def _credit(self, entry: list, now: float) -> None:
        self.seconds[entry[0]] = self.seconds.get(entry[0], 0.0) + now - entry[1]

    @contextmanager
    def __call__(self, stage: str):
        now = time.perf_counter()
        if self._open:
            self._credit(self._open[-1], now)
        self._open.append([stage, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self._credit(self._open.pop(), now)
            if self._open:
                self._open[-1][1] = now


def final_bake(
    mesh: trimesh.Trimesh, views, s: Settings, timer: Timer, fill: bool = True
) -> tuple[np.ndarray, BakeResult]:
    """Bake the generated RGB views, then fill unseen texels and seams in UV space (with `s.inpaint_generator`
    when one is given, else harmonically)."""
    with timer("geometry"):
        result = bake(mesh, views, s.texture_size, power=s.bake_power, padding=0, cancel=s.cancel)
    if not fill:
        return result.texture, result
    with timer("model" if s.inpaint_generator is not None else "geometry"):
        texture = inpaint_uv(
            mesh,
            result.texture,
            ~result.seen,
            generator=s.inpaint_generator,
            prompt=s.prompt,
            seed=s.seed,
            cancel=s.cancel,
        )
    return texture, result
