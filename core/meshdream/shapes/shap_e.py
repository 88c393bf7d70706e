"""Open-vocabulary shapes: OpenAI's Shap-E (a sentence or a picture -> 3D) through diffusers, offline.

The prior runs as diffusers' pipeline (output_type="latent"; the starting noise is drawn on the CPU from the seed,
so a seed gives the same shape on every device). The mesh is ours: the renderer's signed distance field on a grid,
meshed by scikit-image's marching cubes. diffusers' own mesh decoder reads lookup tables that not every saved
renderer carries (all zeros: no faces at all) and fixes the grid at 128; a field padded with "outside" on every
side meshes closed by construction. `meshing.finish_mesh` then makes it like every other shape's mesh.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np
import torch
import trimesh

from ..errors import InvalidMeshError, InvalidParameterError
from ..generators.base import GeneratorKindError
from ..generators.loading import resolve_folder
from ..progress import CancelToken, ProgressCallback, Reporter
from .meshing import FACE_BUDGET, finish_mesh
from .procedural import normalize_cloud

# Pipeline class -> what it is conditioned on, and the model card's sampling defaults (steps, guidance).
KINDS = {"ShapEPipeline": ("text", 64, 15.0), "ShapEImg2ImgPipeline": ("image", 64, 3.0)}
_Z_UP_TO_Y_UP = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)  # Shap-E's frame is z up
_QUERY_BATCH = 65536  # SDF queries per MLP call


@dataclass
class ShapE:
    """A loaded Shap-E pipeline; `mesh` and `points` are all a caller needs (see `load_shap_e`)."""

    pipe: Any  # diffusers.ShapEPipeline or ShapEImg2ImgPipeline
    kind: str  # "text" or "image": what `prompt` must be
    name: str
    default_steps: int = 64
    default_guidance: float = 15.0
    grid: int = 128  # SDF samples per side of Shap-E's [-1, 1]³ box
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    open_vocabulary: ClassVar[bool] = True

    @property
    def device(self) -> torch.device:
        return self.pipe.prior.device

    def to(self, device: Union[str, torch.device]) -> "ShapE":
        """This model, moved to `device` (in place: one copy of the large weights; calls are serialized)."""
        with self.lock:
            self.pipe.to(torch.device(device))
        return self

    def mesh(
        self,
        prompt,
        seed: int = 0,
        steps: Optional[int] = None,
        guidance: Optional[float] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        unwrap: bool = True,
    ) -> trimesh.Trimesh:
        """A closed (is_closed), normalized, y-up, UV-unwrapped mesh of `prompt` (text for openai/shap-e, an image
        array or PIL image for openai/shap-e-img2img); the same arguments give the same mesh. Reports stage
        "denoise" once per prior evaluation; cancel stops at the next one."""
        sdf = self.sdf_field(prompt, seed, steps, guidance, progress, cancel)
        if sdf.max() <= 0:
            raise InvalidMeshError("Shap-E found no solid for this prompt and seed; try another seed or more steps.")
        return finish_mesh(_march(sdf), unwrap=unwrap, seed=int(seed))

    def points(
        self,
        prompt,
        n_points: int = 2048,
        seed: int = 0,
        steps: Optional[int] = None,
        guidance: Optional[float] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
    ) -> np.ndarray:
        """(n_points, 3) float32 seeded samples of the mesh's surface, normalized like `generate_shape`'s clouds."""
        mesh = self.mesh(prompt, seed, steps, guidance, progress, cancel, unwrap=False)
        points, _ = trimesh.sample.sample_surface(mesh, int(n_points), seed=int(seed))
        return normalize_cloud(points)

    @torch.no_grad()
    def sdf_field(
        self,
        prompt,
        seed: int = 0,
        steps: Optional[int] = None,
        guidance: Optional[float] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
    ) -> np.ndarray:
        """The shape's signed distance field (> 0 inside) on the grid over [-1, 1]³, (grid,) * 3 indexed x, y, z in
        Shap-E's z-up frame: the model's part of `mesh` (the rest is clean-up on the CPU)."""
        with self.lock:
            return self._field(prompt, int(seed), steps, guidance, Reporter(progress, cancel))

    def _field(self, prompt, seed: int, steps: Optional[int], guidance: Optional[float], report: Reporter):
        steps = self.default_steps if steps is None else steps
        guidance = self.default_guidance if guidance is None else guidance
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= 1000:
            raise InvalidParameterError(f"steps={steps!r} must be a whole number in 1-1000 ({self.default_steps}).")
        if not np.isfinite(guidance) or guidance < 0:
            raise InvalidParameterError(f"guidance={guidance!r} must be a number >= 0 ({self.default_guidance}).")
        prior = self.pipe.prior.config
        noise = torch.randn(
            1, prior.num_embeddings * prior.embedding_dim, generator=torch.Generator().manual_seed(seed)
        )
        condition = self._condition(prompt)
        self.pipe.progress_bar = lambda timesteps: _reported(timesteps, report)
        try:
            latents = self.pipe(
                condition,
                num_inference_steps=int(steps),
                guidance_scale=float(guidance),
                latents=noise,
                output_type="latent",
            ).images
        finally:
            del self.pipe.progress_bar  # back to the class's tqdm bar
        return self._sdf(latents[0])

    def _condition(self, prompt):
        """What the pipeline takes: the text, or the picture as an RGB PIL image (arrays: uint8, or floats in 0-1)."""
        from PIL import Image

        if self.kind == "text":
            if isinstance(prompt, str) and prompt.strip():
                return prompt
            raise InvalidParameterError(f"{self.name} makes shapes from text; pass a sentence, not {prompt!r:.60}.")
        if isinstance(prompt, Image.Image):
            return prompt.convert("RGB")
        image = None if isinstance(prompt, str) else np.asarray(prompt)
        if image is None or not (image.ndim == 2 or image.ndim == 3 and image.shape[-1] in (1, 3, 4)):
            raise InvalidParameterError(
                f"{self.name} makes shapes from a picture; pass an (H, W, 3) image array or a PIL image."
            )
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        channels = image[..., :3] if image.ndim == 3 and image.shape[-1] >= 3 else image.reshape(image.shape[:2])
        return Image.fromarray(channels).convert("RGB")

    def _sdf(self, latent: torch.Tensor) -> np.ndarray:
        """The latent's NeRSTF MLP (its first layers are the latent, projected) queried on the grid."""
        from diffusers.pipelines.shap_e.renderer import volume_query_points

        renderer = self.pipe.shap_e_renderer
        params = renderer.params_proj(latent[None])
        for name, param in renderer.mlp.state_dict().items():
            if f"nerstf.{name}" in params:
                param.copy_(params[f"nerstf.{name}"].squeeze(0))
        query = volume_query_points(renderer.volume, self.grid).to(self.device, renderer.mlp.dtype)[None]
        sdf = [
            renderer.mlp(
                position=chunk, direction=None, ts=None, nerf_level="fine", rendering_mode="stf"
            ).signed_distance
            for chunk in query.split(_QUERY_BATCH, dim=1)
        ]
        return torch.cat(sdf, dim=1).float().reshape((self.grid,) * 3).cpu().numpy()


def _reported(timesteps, report: Reporter):
    """The pipeline's progress bar, replaced: a report (and a cancel check) around each prior evaluation."""
    total = len(timesteps)
    report("denoise", 0, total)
    for i, t in enumerate(timesteps):
        yield t
        report("denoise", i + 1, total)


def _march(sdf: np.ndarray, face_budget: int = FACE_BUDGET) -> trimesh.Trimesh:
    """Marching cubes on the field padded with "outside" (closed by construction; "ascent": faces wind outward,
    as > 0 is inside), in y-up [-1, 1]³ coordinates; over face_budget, again on every k-th sample of the same
    field (coarser, still closed, still the model's surface rather than a re-sampling of it)."""
    from skimage.measure import marching_cubes

    step, grid = 1, sdf.shape[0]
    while True:
        # A pad as wide as the step: the strided samples start and end in it.
        padded = np.pad(sdf, step, constant_values=-1.0)
        verts, faces, _, _ = marching_cubes(
            padded, 0.0, step_size=step, allow_degenerate=False, gradient_direction="ascent"
        )
        if len(faces) <= face_budget or step >= 8:
            break
        step = max(step + 1, int(step * np.sqrt(len(faces) / face_budget)))  # faces ~ 1 / step²
    verts = (verts - step) * (2.0 / (grid - 1)) - 1.0
    return trimesh.Trimesh(verts @ _Z_UP_TO_Y_UP.T, faces, process=True)


def load_shap_e(spec: str) -> ShapE:
    """A Shap-E pipeline from a cached repo id ("openai/shap-e", "openai/shap-e-img2img") or a local diffusers
    folder of either, on the CPU; nothing is downloaded (resolve_folder says how to fetch a missing one)."""
    import diffusers

    folder = resolve_folder(spec)
    index = Path(folder) / "model_index.json"
    cls = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    if cls not in KINDS:
        raise GeneratorKindError(
            f"'{spec}' is not a Shap-E pipeline ({cls or 'no model_index.json'}); shape models are 'builtin', "
            "'openai/shap-e' (text), 'openai/shap-e-img2img' (a picture) or a local diffusers folder of either."
        )
    kind, steps, guidance = KINDS[cls]
    pipe = getattr(diffusers, cls).from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return ShapE(pipe, kind, name=str(spec), default_steps=steps, default_guidance=guidance)
