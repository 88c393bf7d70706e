"""`generate_shape`: a prompt ("a tall round table") or a category to a new point cloud, with the shipped model.

The prompt's first category word (or synonym: "desk" is a table, "armchair" a chair with arms) picks the
category; attribute words the category was trained with ("tall", "short", "round", "square", "arms", "pine")
condition it further; other words are ignored, so "a red chair" is a chair.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Optional, Union

import numpy as np
import torch
import trimesh

from ..errors import InvalidParameterError
from ..progress import CancelToken, ProgressCallback, Reporter
from .meshing import FACE_BUDGET, finish_mesh, points_to_mesh, unwrap_fast
from .procedural import CATEGORIES, normalize_cloud
from .sampler import load_shape_model, sample_points

# A `load_shape_model` spec (None, "builtin", a weights path, a Shap-E repo id or folder) or a loaded model.
ShapeModelSpec = Union[str, os.PathLike, Any, None]

CATEGORY_WORDS = {
    "chair": "chair",
    "armchair": "chair",
    "seat": "chair",
    "table": "table",
    "desk": "table",
    "stool": "stool",
    "barstool": "stool",
    "lamp": "lamp",
    "floorlamp": "lamp",
    "mug": "mug",
    "cup": "mug",
    "vase": "vase",
    "urn": "vase",
    "bottle": "bottle",
    "flask": "bottle",
    "shelf": "shelf",
    "shelves": "shelf",
    "bookshelf": "shelf",
    "bookcase": "shelf",
    "shelving": "shelf",
    "rocket": "rocket",
    "spaceship": "rocket",
    "missile": "rocket",
    "car": "car",
    "automobile": "car",
    "vehicle": "car",
    "airplane": "airplane",
    "aeroplane": "airplane",
    "plane": "airplane",
    "aircraft": "airplane",
    "jet": "airplane",
    "tree": "tree",
    "pine": "tree",
    "fir": "tree",
}
TAG_WORDS = {
    "tall": "tall",
    "high": "tall",
    "slender": "tall",
    "short": "short",
    "low": "short",
    "squat": "short",
    "stubby": "short",
    "round": "round",
    "circular": "round",
    "cylindrical": "round",
    "rounded": "round",
    "square": "square",
    "rectangular": "square",
    "boxy": "square",
    "arms": "arms",
    "armrests": "arms",
    "armchair": "arms",
    "pine": "pine",
    "fir": "pine",
    "conifer": "pine",
    "christmas": "pine",
}
# Which attribute words each category was trained with (others would only confuse it).
CATEGORY_TAGS = {
    "chair": ("tall", "short", "arms"),
    "table": ("tall", "short", "round", "square"),
    "stool": ("tall", "short", "round", "square"),
    "lamp": ("tall", "short", "round", "square"),
    "mug": ("tall", "short"),
    "vase": ("tall", "short"),
    "bottle": ("tall", "short"),
    "shelf": ("tall", "short"),
    "rocket": ("tall", "short"),
    "car": ("tall", "short"),
    "airplane": ("short", "tall"),
    "tree": ("tall", "short", "round", "pine"),
}


def shape_categories() -> list[str]:
    """The categories `generate_shape` knows, in the model's order."""
    return list(load_shape_model().categories)


def _words(prompt: str) -> list[str]:
    words = re.findall(r"[a-z]+", prompt.lower())
    return words + [w[:-1] for w in words if w.endswith("s") and w[:-1] in CATEGORY_WORDS]


def parse_prompt(prompt: Union[str, int], categories: Optional[list[str]] = None) -> tuple[str, tuple[str, ...]]:
    """(category, attribute words) of a prompt or a category index; an unknown prompt raises an error naming
    the known categories."""
    categories = list(categories or CATEGORIES)
    if isinstance(prompt, (int, np.integer)) and not isinstance(prompt, bool):
        if not 0 <= int(prompt) < len(categories):
            raise InvalidParameterError(
                f"Category index {prompt} is out of range; use 0-{len(categories) - 1} ({', '.join(categories)})."
            )
        return categories[int(prompt)], ()
    if not isinstance(prompt, str):
        raise InvalidParameterError(f"prompt must be text or a category index, not {type(prompt).__name__}.")
    words = _words(prompt)
    found = [CATEGORY_WORDS[w] for w in words if w in CATEGORY_WORDS and CATEGORY_WORDS[w] in categories]
    if not found:
        raise InvalidParameterError(
            f"No known shape category in {prompt!r}; the shape model knows: {', '.join(categories)} "
            "(synonyms such as desk, cup, bookcase, plane also work)."
        )
    category = found[0]
    allowed = CATEGORY_TAGS.get(category, ())
    tags = tuple(dict.fromkeys(TAG_WORDS[w] for w in words if w in TAG_WORDS and TAG_WORDS[w] in allowed))
    if "tall" in tags and "short" in tags:
        tags = tuple(t for t in tags if t != "short")
    return category, tags


def generate_shape(
    prompt: Union[str, int],
    n_points: int = 2048,
    seed: int = 0,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    device: Union[str, torch.device, None] = None,
    shape_model: ShapeModelSpec = None,
) -> np.ndarray:
    """A new point cloud of `prompt` (text such as "tall chair", a category name, or its index in
    `shape_categories()`): (n_points, 3) float32, y up, bounding box centred at the origin, farthest point at
    radius 1. The same arguments give the same cloud. steps: DPM-Solver++ steps (default 25); guidance:
    classifier-free guidance scale (default from the model card; 1 = none). device: where to sample (None: where
    the model is, the CPU once loaded: the built-in model is small enough that a GPU gains little; Shap-E's is not,
    pass "cuda"). Mesh it with `points_to_mesh`.
    shape_model: a `load_shape_model` spec or a loaded model (default: the built-in one); an open-vocabulary model
    (Shap-E) takes any sentence (or, img2img, a picture) and its cloud samples the surface of its mesh."""
    model = _model(shape_model, device)
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or not 16 <= n_points <= 100_000:
        raise InvalidParameterError(f"n_points={n_points!r} is out of range; use an integer in 16-100000 (2048).")
    if getattr(model, "open_vocabulary", False):
        return model.points(prompt, int(n_points), int(seed), steps, guidance, progress, cancel)
    category, tags = parse_prompt(prompt, model.categories)
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise InvalidParameterError(f"steps={steps!r} must be a whole number >= 1 (None: the model's own, 25).")
    steps = model.default_steps if steps is None else int(steps)
    guidance = model.default_guidance if guidance is None else float(guidance)
    tag_vec = np.array([[t in tags for t in model.tags]], np.float32)
    cloud = sample_points(
        model,
        [model.categories.index(category)],
        tag_vec,
        int(n_points),
        [int(seed)],
        steps=steps,
        guidance=guidance,
        progress=progress,
        cancel=cancel,
    )[0]
    return normalize_cloud(cloud)


def shape_mesh(
    prompt,
    shape_model: ShapeModelSpec = None,
    seed: int = 0,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    device: Union[str, torch.device, None] = None,
    n_points: int = 2048,
    face_budget: int = FACE_BUDGET,
    timings: Optional[dict] = None,
) -> trimesh.Trimesh:
    """A closed, normalized (bounding box centred, farthest vertex at radius 1), y-up, UV-unwrapped mesh of
    `prompt`, ready to texture: the built-in model's cloud (n_points) through `points_to_mesh`, or an
    open-vocabulary model's own mesh (`.mesh`), finished the same way. timings: a dict that gets the seconds of
    each stage ("shape", and for the built-in model "mesh" and "unwrap")."""
    timings = {} if timings is None else timings
    model = _model(shape_model, device)
    t = time.perf_counter()
    if getattr(model, "open_vocabulary", False):
        mesh = model.mesh(prompt, seed=seed, steps=steps, guidance=guidance, progress=progress, cancel=cancel)
        timings["shape"] = time.perf_counter() - t
        return mesh
    points = generate_shape(prompt, n_points, seed, steps, guidance, progress, cancel, shape_model=model)
    timings["shape"], t = time.perf_counter() - t, time.perf_counter()
    Reporter(progress, cancel)("mesh", 0, 1, "closing the surface")
    closed = points_to_mesh(points, face_budget=face_budget, unwrap=False)
    mesh = finish_mesh(closed, face_budget=face_budget, unwrap=False, seed=int(seed))
    timings["mesh"], t = time.perf_counter() - t, time.perf_counter()
    mesh = unwrap_fast(mesh)
    timings["unwrap"] = time.perf_counter() - t
    return mesh


def _model(spec: ShapeModelSpec, device: Union[str, torch.device, None]):
    """A loaded model as given, else `load_shape_model(spec)`; on `device` (None: where it is, the CPU once loaded)."""
    model = load_shape_model(spec) if spec is None or isinstance(spec, (str, os.PathLike)) else spec
    return model if device is None else model.to(_device(device))


def _device(device: Union[str, torch.device]) -> torch.device:
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError(f"device={device!r} is not a torch device; use 'cpu' or 'cuda'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device='cuda' but this PyTorch sees no CUDA GPU; use device='cpu'.")
    return device
