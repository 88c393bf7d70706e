"""`texture_mesh`: the entry point shared by the Python API, the CLI, the server and the Blender add-on."""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch
import trimesh

from ..errors import InvalidParameterError
from ..geometry import Camera, load_mesh, orbit_cameras
from ..geometry.texture import as_float_image, check_texture_size
from ..progress import CancelToken, ProgressCallback
from .common import Settings, Timer
from .multiscale import refine
from .project import texture_project
from .result import TextureResult
from .sequential import texture_sequential
from .sync import texture_sync
from .views import LIGHTING_NEGATIVE, prepare_views

STRATEGIES = ("sync", "sequential", "project")


def texture_mesh(
    mesh,
    prompt: str,
    generator=None,
    strategy: str = "sync",
    n_views: int = 8,
    view_resolution: int = 512,
    texture_size: int = 1024,
    seed: int = 0,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    cameras: Optional[Sequence[Camera]] = None,
    negative_prompt: str = LIGHTING_NEGATIVE,
    init_image: Optional[np.ndarray] = None,
    strength: float = 0.6,
    directions: bool = True,
    inpaint_generator=None,
    refine_scale: int = 1,
    refine_strength: float = 0.35,
    reference_image: Optional[np.ndarray] = None,
) -> TextureResult:
    """Texture `mesh` (a path, or a trimesh; normalized with load_mesh unless it came from there) from `prompt`.

    strategy: "sync" (all views denoised together through one shared texture), "sequential" (view after view,
    keep/refine/generate), or "project" (one camera, e.g. the viewport; optional `init_image` for img2img at
    `strength`). cameras: in the normalized frame (see Camera.transformed); default orbit_cameras(n_views).
    generator: from load_generator(); None loads the built-in model.
    inpaint_generator: fills texels no view saw, in UV space (e.g. an SD inpainting model); None: harmonic fill.
    reference_image: (H, W, 3) picture whose style the texture follows (generators loaded with an IP-Adapter).
    refine_scale: > 1 adds a pass that refines the views at that many times their resolution (img2img over tiles
        of the model's native size, `refine_strength`); the first pass then bakes at texture_size / refine_scale.
    """
    t0 = time.perf_counter()
    if strategy not in STRATEGIES:
        raise InvalidParameterError(f"Strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameterError("The prompt is empty; describe the texture, e.g. 'weathered red brick'.")
    check_texture_size(texture_size)
    if refine_scale not in (1, 2, 4) or texture_size // refine_scale < 16:
        raise InvalidParameterError(f"refine_scale {refine_scale} must be 1, 2 or 4 (and leave a texture of >= 16).")
    timer = Timer()
    if generator is None:
        from ..generators import load_generator

        with timer("load_model"):
            generator = load_generator("builtin")
    if view_resolution % generator.latent_factor:
        raise InvalidParameterError(
            f"View resolution {view_resolution} must be a multiple of {generator.latent_factor} for {generator.name}."
        )
    if not (isinstance(mesh, trimesh.Trimesh) and "meshdream" in mesh.metadata):
        with timer("load_mesh"):
            mesh = load_mesh(mesh)
    with timer("views"):
        chosen = cameras is None  # views MeshDream chose that see nothing are dropped; a caller's are an error
        if chosen:
            cameras = orbit_cameras(1 if strategy == "project" else n_views, resolution=view_resolution, mesh=mesh)
        cameras = list(cameras)
        if strategy == "project" and len(cameras) != 1:
            raise InvalidParameterError(f"The project strategy takes exactly one camera, got {len(cameras)}.")
        views = prepare_views(
            mesh, cameras, prompt.strip(), directions, normals=generator.uses_normals, require_visible=not chosen
        )
    settings = Settings(
        prompt=prompt.strip(),
        texture_size=texture_size // refine_scale,
        seed=seed,
        steps=steps or generator.default_steps,
        guidance=generator.default_guidance if guidance is None else guidance,
        negative_prompt=negative_prompt,
        progress=progress,
        cancel=cancel,
        inpaint_generator=inpaint_generator,
        reference_image=None
        if reference_image is None
        else torch.from_numpy(as_float_image(reference_image, 3, "reference image")).permute(2, 0, 1)[None],
    )
    if strategy == "sync":
        result = texture_sync(mesh, views, generator, settings, timer)
    elif strategy == "sequential":
        result = texture_sequential(mesh, views, generator, settings, timer)
    else:
        result = texture_project(mesh, views, generator, settings, timer, init_image, strength)
    if refine_scale > 1:
        result = refine(mesh, result, generator, settings, timer, scale=refine_scale, strength=refine_strength)
    result.timings = timer.timings(time.perf_counter() - t0)
    return result
