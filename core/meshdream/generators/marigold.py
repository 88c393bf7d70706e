"""Marigold material models through diffusers: intrinsics (albedo, roughness, metallicity) and normals, offline.

A spec is a local diffusers folder or a Hugging Face id in the local cache (nothing is downloaded), of a
MarigoldIntrinsicsPipeline (e.g. prs-eth/marigold-iid-appearance-v1-1) or a MarigoldNormalsPipeline (e.g.
prs-eth/marigold-normals-v1-1); "A+B" joins one of each. What a Marigold model does not predict (normals for an
intrinsics model, roughness and metallic for a normals model) comes from the built-in material model, so every
map is always filled. Views are shown to Marigold on mid grey, the background it sees least as an edge.

Marigold's normals are of the whole surface, in the camera frame (x right, y up, z toward the viewer). Detail is
taken relative to the surface the model itself predicts: each normal is turned by the rotation that takes a wide
masked blur of the prediction onto (0, 0, 1), so the shape (already in the mesh) drops out and bumps remain.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import CancelToken, ProgressCallback, Reporter
from ..tensors import pick_device
from .base import GeneratorKindError
from .loading import resolve_folder
from .material_models import MaterialModel, MaterialViews

KINDS = {"MarigoldIntrinsicsPipeline": "intrinsics", "MarigoldNormalsPipeline": "normals"}
BACKGROUND = 0.5
DETAIL_SIGMA = 1 / 24  # of the view's size: the blur whose normal counts as the surface's own


class MarigoldMaterialModel(MaterialModel):
    """One or two Marigold pipelines (at most one of each kind) and the built-in model for what they lack."""

    def __init__(self, pipes: dict, device: torch.device, steps: Optional[int] = None, resolution=None):
        """pipes: kind -> pipeline; steps, resolution: denoising steps and processing resolution (None: each
        pipeline's defaults from its model card)."""
        self.pipes = pipes
        self.device = device
        self.steps = steps
        self.resolution = resolution
        self.makes_albedo = "intrinsics" in pipes
        self.name = " + ".join(f"Marigold {kind}" for kind in pipes)
        self._builtin: Optional[MaterialModel] = None

    def _run(self, kind: str, image: np.ndarray) -> np.ndarray:
        pipe = self.pipes[kind]
        out = pipe(
            image[None],
            num_inference_steps=self.steps,
            processing_resolution=self.resolution,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="np",
        )
        return np.asarray(out.prediction, np.float32)

    def estimate(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        normals: np.ndarray,
        prompt: str = "",
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
    ) -> MaterialViews:
        report = Reporter(progress, cancel)
        shown = np.where(masks[..., None], images, BACKGROUND).astype(np.float32)
        v = len(images)
        found: dict[str, list] = {"albedo": [], "roughness": [], "metallic": [], "normal": []}
        for i in range(v):
            report("material", i, v, self.name)
            if "intrinsics" in self.pipes:
                for name, value in _intrinsics(self.pipes["intrinsics"], self._run("intrinsics", shown[i])).items():
                    found[name].append(value)
            if "normals" in self.pipes:
                found["normal"].append(detail_normals(self._run("normals", shown[i])[0], masks[i]))
        report("material", v, v, self.name)
        stacked = {k: np.stack(a) if a else None for k, a in found.items()}
        if stacked["roughness"] is None or stacked["normal"] is None:
            own = self._builtin_model().estimate(images, masks, normals, prompt)
            stacked = {k: getattr(own, k) if a is None and k != "albedo" else a for k, a in stacked.items()}
        return MaterialViews(**stacked)

    def _builtin_model(self) -> MaterialModel:
        if self._builtin is None:
            from .builtin.material_model import load_builtin_material_model

            self._builtin = load_builtin_material_model(self.device)
        return self._builtin


def _intrinsics(pipe, prediction: np.ndarray) -> dict[str, np.ndarray]:
    """Albedo, roughness and metallic of one view from an intrinsics prediction (T, H, W, 3), read through the
    pipeline's target_properties (targets, stacked sub-targets, linear or sRGB spaces)."""
    props = pipe.target_properties or {}
    out = {}
    for target, image in zip(props.get("target_names", []), prediction):
        space = props.get(target, {}).get("prediction_space", "srgb")
        if space == "stack":
            for channel, sub in enumerate(props[target].get("sub_target_names", [])):
                key = {"roughness": "roughness", "metallicity": "metallic", "metallic": "metallic"}.get(sub or "")
                if key:
                    out[key] = image[..., channel]
        elif target == "albedo":
            out["albedo"] = image ** (1 / 2.2) if space == "linear" else image
        elif target in ("roughness", "metallicity", "metallic"):
            out["metallic" if target.startswith("metal") else "roughness"] = image[..., 0]
    if "albedo" not in out or "roughness" not in out or "metallic" not in out:
        raise GeneratorKindError(
            f"This Marigold intrinsics model predicts {', '.join(props.get('target_names', [])) or 'nothing named'}, "
            "not albedo, roughness and metallicity; use an appearance model such as "
            "prs-eth/marigold-iid-appearance-v1-1."
        )
    return {k: np.clip(v, 0, 1).astype(np.float32) for k, v in out.items()}


def detail_normals(normal: np.ndarray, mask: np.ndarray, sigma: float = DETAIL_SIGMA) -> np.ndarray:
    """(H, W, 3) unit normals with the surface's own shape taken out: each is turned by the rotation that takes
    the masked gaussian blur of the field (sigma in view sizes) onto (0, 0, 1)."""
    n = torch.from_numpy(np.ascontiguousarray(normal, np.float32)).permute(2, 0, 1)[None]
    m = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None, None]
    s = max(sigma * max(mask.shape), 0.5)
    radius = int(3 * s)
    k = torch.exp(-((torch.arange(-radius, radius + 1, dtype=torch.float32) / s) ** 2) / 2)
    k = k / k.sum()

    def blur(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.conv2d(
            F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
        )
        return F.conv2d(
            F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
        )

    base = blur(n * m) / blur(m).clamp_min(1e-6)
    base = base[0].permute(1, 2, 0).numpy()
    base = base / np.maximum(np.linalg.norm(base, axis=-1, keepdims=True), 1e-6)
    base[~mask] = (0, 0, 1)
    base[base[..., 2] < -0.99] = (0, 0, 1)  # facing away: no rotation is defined; Marigold sees none there
    return rotate_onto_z(base, normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-6))


def rotate_onto_z(base: np.ndarray, v: np.ndarray) -> np.ndarray:
    """v (..., 3) turned by the shortest rotation taking unit `base` (..., 3) onto (0, 0, 1) (Rodrigues: with
    a = base x z, c = base . z: R v = v + a x v + a x (a x v) / (1 + c))."""
    z = np.zeros_like(base)
    z[..., 2] = 1
    a = np.cross(base, z)
    c = base[..., 2:3]
    av = np.cross(a, v)
    out = v + av + np.cross(a, av) / (1 + c)
    return (out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-6)).astype(np.float32)


def load_marigold(spec: str | os.PathLike, device: str | torch.device = "auto") -> MarigoldMaterialModel:
    """A Marigold material model from a local folder or a cached Hugging Face id (never downloaded); "A+B" joins
    an intrinsics and a normals pipeline."""
    import diffusers

    dev = pick_device(device)
    pipes = {}
    for part in os.fspath(spec).split("+"):
        folder = resolve_folder(part.strip())
        index = folder / "model_index.json"
        cls = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
        kind = KINDS.get(cls or "")
        if kind is None:
            raise GeneratorKindError(
                f"{part} is {'a ' + cls if cls else 'not a diffusers pipeline'}, not a Marigold intrinsics or normals "
                "pipeline; pass e.g. prs-eth/marigold-iid-appearance-v1-1 or prs-eth/marigold-normals-v1-1 (cached), "
                "or 'builtin'."
            )
        if kind in pipes:
            raise GeneratorKindError(f"{spec} names two Marigold {kind} pipelines; join at most one of each kind.")
        pipe = getattr(diffusers, cls).from_pretrained(
            folder, local_files_only=True, torch_dtype=torch.float16 if dev.type == "cuda" else torch.float32
        )
        pipe.to(dev)
        pipe.set_progress_bar_config(disable=True)
        pipes[kind] = pipe
    return MarigoldMaterialModel(pipes, dev)
