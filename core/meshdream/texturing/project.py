"""Project from view: texture what one camera (e.g. the user's viewport) sees, optionally from its render."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import trimesh

from ..errors import InvalidParameterError
from ..generators import GenerationRequest, sample
from ..geometry.texture import as_float_image
from .common import Settings, Timer, final_bake, prepare_final_bake
from .result import TextureResult
from .views import ViewSet, to_images


def texture_project(
    mesh: trimesh.Trimesh,
    views: ViewSet,
    generator,
    s: Settings,
    timer: Timer,
    init_image: Optional[np.ndarray] = None,
    strength: float = 0.6,
) -> TextureResult:
    """Only texels the view sees get colour (weight > 0); the caller composes them over an existing texture."""
    cam, maps = views.cameras[0], views.maps[0]
    init = None
    if init_image is not None:
        img = as_float_image(init_image, 3, "viewport image")
        if img.shape[:2] != maps.mask.shape:
            raise InvalidParameterError(
                f"The viewport image is {img.shape[1]}x{img.shape[0]} but the camera renders "
                f"{cam.width}x{cam.height}; pass a camera of the image's size."
            )
        init = torch.from_numpy(img).permute(2, 0, 1)[None]
    request = GenerationRequest(
        prompts=views.prompts[:1],
        negative_prompt=s.negative_prompt,
        depth=views.depth[:1],
        normal=None if views.normal is None else views.normal[:1],
        init_images=init,
        strength=strength if init is not None else 1.0,
        steps=s.steps,
        guidance=s.guidance,
        seed=s.seed,
        reference_image=s.reference_image,
    )
    with timer("bake"):
        final = prepare_final_bake(mesh, views, s, generator, fill=False)
    with timer("denoise"):
        image = to_images(sample(generator, request, progress=s.progress, cancel=s.cancel))[0]
    texture, result = final_bake(mesh, [(cam, image)], views, s, timer, generator, fill=False, op=final)
    return TextureResult(texture, result.weight, [(cam, image)], strategy="project")
