"""Shared steps of the texturing strategies: the job settings, timing, the final bake and fill."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import trimesh

from ..geometry import BakeOperator, BakeResult, bake_operator
from ..progress import CancelToken, ProgressCallback
from .inpaint import inpaint_uv, prepare_uv_inpainting
from .views import LIGHTING_NEGATIVE, ViewSet


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
    atlas_grid: int = 1  # pages per side of the texture atlas (several materials / UDIM tiles); sizes scale with it
    init_images: object = None  # (B, 3, H, W) views to start from (img2img, sync only); None: pure noise
    strength: float = 1.0  # with init_images: fraction of the schedule re-run (0: the views as they are)
    progress: Optional[ProgressCallback] = None
    cancel: Optional[CancelToken] = None
    bake_op: object = None  # the final bake's operator, once made: PBR maps are baked with its cameras and weights


# What each timed stage of texturing is, so timings add up to "setup", "geometry" and "model" totals.
STAGE_KINDS = {
    "load_mesh": "setup",  # reading, cleaning and normalizing the mesh (skipped for a mesh from load_mesh)
    "unwrap": "setup",  # xatlas UV unwrapping of a mesh without usable UVs, while loading it
    "load_model": "setup",  # loading the built-in model when no generator is given
    "views": "geometry",  # cameras and the depth / normal / mask renders of every view
    "sync": "geometry",  # building the shared latent texture and the per-step bake / render-back
    "paint": "geometry",  # sequential: keep / refine / generate masks and the per-view bakes
    "denoise": "model",  # the diffusion sampling loop, encode / decode included
    "bake": "geometry",  # baking the generated RGB views into the texture
    "inpaint": "geometry",  # harmonic UV fill and seam matching
    "inpaint_model": "model",  # UV fill by an inpainting generator
    "refine": "geometry",  # refine pass: re-rendering views, tiling and baking
    "transfer": "geometry",  # restyle: per-chart colour statistics matched to a reference picture
    "materials": "model",  # pbr: rendering the finished texture, estimating and baking the material maps
}


class Timer:
    """Accumulates wall time per stage (see STAGE_KINDS). Stages nest: time in an inner stage (the per-step bake
    inside denoising) is not also counted for the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._open: list[list] = []  # [stage, time it last (re)started]

    def _credit(self, entry: list, now: float) -> None:
        self.seconds[entry[0]] = self.seconds.get(entry[0], 0.0) + now - entry[1]

    @contextmanager
    def __call__(self, stage: str):
        if stage not in STAGE_KINDS:
            raise ValueError(f"unknown timing stage {stage!r}")
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

    def split(self, stage: str, part: str, seconds: float) -> None:
        """Credit `seconds` of what `stage` measured to stage `part` instead: a call that times its own inner
        steps (load_mesh's unwrap) gets them reported apart."""
        if part not in STAGE_KINDS:
            raise ValueError(f"unknown timing stage {part!r}")
        if seconds > 0:
            self.seconds[stage] = self.seconds.get(stage, 0.0) - seconds
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    def timings(self, total: float) -> dict[str, float]:
        """Seconds per stage, per kind ("setup", "geometry", "model") and "total" (the whole call)."""
        out = {k: round(v, 4) for k, v in self.seconds.items()}
        for kind in ("setup", "geometry", "model"):
            out[kind] = round(sum(v for k, v in self.seconds.items() if STAGE_KINDS[k] == kind), 4)
        out["total"] = round(total, 4)
        return out


_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshdream-geometry")


def prepare_final_bake(
    mesh: trimesh.Trimesh, views: ViewSet, s: Settings, generator, fill: bool = True
) -> BakeOperator | Future:
    """The final bake's operator and UV inpainting's caches depend on the mesh and the cameras only. With the model
    on a GPU they are built on a worker thread (and a CUDA stream of its own) while the model denoises, so the CPU
    geometry and the GPU work at once; on the CPU, where both would share the cores, they are built right away."""

    def build() -> BakeOperator:
        stream = torch.cuda.Stream(generator.device) if generator.device.type == "cuda" else None
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            op = bake_operator(
                mesh, views.cameras, s.texture_size, power=s.bake_power, maps=views.maps, device=generator.device
            )
            if fill:
                prepare_uv_inpainting(mesh, s.texture_size)
            if stream is not None:
                stream.synchronize()
        return op

    return _BACKGROUND.submit(build) if generator.device.type == "cuda" else build()


def final_bake(
    mesh: trimesh.Trimesh,
    generated: list,
    views: ViewSet,
    s: Settings,
    timer: Timer,
    generator,
    fill: bool = True,
    op: BakeOperator | Future | None = None,
) -> tuple[np.ndarray, BakeResult]:
    """Bake the generated RGB views (camera, image) of `views` with `op` (from prepare_final_bake, or any operator
    for these cameras and size; None builds it now), then fill unseen texels and seams in UV space (with
    `s.inpaint_generator` when one is given, else harmonically)."""
    with timer("bake"):
        if op is None:
            op = prepare_final_bake(mesh, views, s, generator, fill)
        if isinstance(op, Future):
            op = op.result()
        s.bake_op = op.reweighted(s.bake_power)
        result = s.bake_op.apply([img for _, img in generated], padding=0)
    if not fill:
        return result.texture, result
    with timer("inpaint_model" if s.inpaint_generator is not None else "inpaint"):
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
