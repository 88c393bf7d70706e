"""Loading the shipped shape model and sampling point clouds from it with a fast multistep solver.

Training noises standardized shape codes on a diffusers DDPM schedule (1000 steps, v-prediction); sampling runs
DPM-Solver++ (2nd order) on the same schedule in 20-50 steps, with classifier-free guidance, and the decoder
turns the final codes into points. Every shape's starting noise comes from its own seed, so a shape depends on
its seed alone, not on what else shares the batch. Sampling runs wholly on the model's device (`ShapeModel.to`);
the seeded draws are made on the CPU and moved, so a seed gives the same cloud on every device.
`load_shape_model` is the one place a shape-model spec is resolved (Shap-E specs go to shap_e.py).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import InvalidParameterError, MeshDreamError
from ..progress import CancelToken, ProgressCallback, Reporter
from ..tensors import load_weights, to_device
from .model import ShapeModelConfig, ShapeNets

if TYPE_CHECKING:
    from .shap_e import ShapE

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "shape_model.safetensors"
# The DDPM schedule the model was trained on (linear betas over 1000 steps).
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "v_prediction",
    "clip_sample": False,
}
# Clean-code predictions are clipped to this many standard deviations: a safety net against stray codes.
CLIP_SIGMAS = 5.0


class ShapeModelNotFoundError(MeshDreamError, FileNotFoundError):
    """The shape model's weights are missing."""


@dataclass
class ShapeModel:
    nets: ShapeNets
    card: dict  # the model card (shape_model.json): categories, tags, defaults, training record, metrics
    copies: dict = field(default_factory=dict, repr=False)  # device -> this model there (see `to`)

    @property
    def device(self) -> torch.device:
        return self.nets.code_mean.device

    def to(self, device: str | torch.device) -> "ShapeModel":
        """This model on `device`: copied on first use and kept with this one, so a cached model serves every
        device and unloading it (load_shape_model.cache_clear) frees the copies too."""
        device = torch.device(device)
        if device == self.device:
            return self
        if device not in self.copies:
            self.copies[device] = ShapeModel(copy.deepcopy(self.nets).to(device), self.card)
        return self.copies[device]

    def put(self, x, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """An array or tensor on the model's device (in `dtype` if given): the one way data reaches the nets."""
        return to_device(x, self.device, dtype)

    @property
    def categories(self) -> list[str]:
        return list(self.card["categories"])

    @property
    def tags(self) -> list[str]:
        return list(self.card["tags"])

    @property
    def default_steps(self) -> int:
        return int(self.card.get("steps_default", 25))

    @property
    def default_guidance(self) -> float:
        return float(self.card.get("guidance_default", 1.0))


def ddpm_scheduler():
    import diffusers

    return diffusers.DDPMScheduler(**SCHEDULE)


def solver(steps: int, device: Optional[torch.device] = None):
    """DPM-Solver++ (2M) on the training schedule, timesteps on `device`; it is fed noise predictions (see
    `to_epsilon`)."""
    import diffusers

    s = diffusers.DPMSolverMultistepScheduler.from_config(
        ddpm_scheduler().config,
        prediction_type="epsilon",
        algorithm_type="dpmsolver++",
        solver_order=2,
        final_sigmas_type="zero",
    )
    s.set_timesteps(steps, device=device)
    return s


def save_shape_model(nets: ShapeNets, card: dict, path: Path) -> None:
    """Weights in float16 (half the size; decoded points move by ~3e-4 of the radius), the card beside them."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().half() for k, v in nets.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(nets.config.to_dict())})
    path.with_suffix(".json").write_text(json.dumps({**card, "config": nets.config.to_dict()}, indent=2) + "\n")


def load_shape_model(spec: Union[str, os.PathLike, None] = None) -> Union[ShapeModel, "ShapE"]:
    """A shape model, cached per spec, on the CPU (`.to(device)` for another), nothing downloaded:
    None or "builtin": the shipped category model; a .safetensors path: weights in its format (train_shape_model);
    "openai/shap-e" (text), "openai/shap-e-img2img" (a picture), or a local diffusers folder of either: Shap-E, an
    open-vocabulary model (`open_vocabulary` True; `.mesh(prompt, ...)`), from the local Hugging Face cache.
    `load_shape_model.cache_clear()` unloads them all."""
    return _load_cached("builtin" if spec is None else os.fspath(spec))


@lru_cache(maxsize=4)
def _load_cached(spec: str) -> Union[ShapeModel, "ShapE"]:
    if spec != "builtin" and not spec.endswith(".safetensors"):
        from .shap_e import load_shap_e

        return load_shap_e(spec)
    return _load_builtin(None if spec == "builtin" else spec)


# The cache is the spec-normalized one (None and "builtin" are one model); callers see it on the public function.
load_shape_model.cache_info, load_shape_model.cache_clear = _load_cached.cache_info, _load_cached.cache_clear


def _load_builtin(path: Optional[str]) -> ShapeModel:
    """The denoiser and its card from `path` (default: the shipped weights), eval mode."""
    card, state = load_weights(
        Path(path) if path else WEIGHTS,
        ShapeModelNotFoundError,
        "The shape model",
        "`python scripts/train_shape_model.py`",
    )
    nets = ShapeNets(ShapeModelConfig(**card["config"]))
    nets.load_state_dict(state)
    nets.eval().requires_grad_(False)
    return ShapeModel(nets, card)


def to_epsilon(x: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The noise prediction that a v-prediction implies, after clipping the predicted clean code to
    CLIP_SIGMAS (standardized codes never go far out; an untrained corner of the model could)."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x0 = (a * x - s * v).clamp(-CLIP_SIGMAS, CLIP_SIGMAS)
    return (x - a * x0) / s


def initial_noise(seeds: Sequence[int], size: int) -> torch.Tensor:
    """One noise vector per seed (per-seed generators: batching does not change a shape)."""
    return torch.stack([torch.randn(size, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def resize_cloud(points: torch.Tensor, n: int, seeds: Sequence[int]) -> torch.Tensor:
    """(B, K, 3) decoder clouds -> (B, n, 3): a seeded random subset when n <= K; otherwise every point is kept
    and the extra ones are midpoints between a point and one of its 6 nearest neighbours (which lie on the same
    patch of surface, so the cloud gets denser without leaving it). The seeded draws are made on the CPU (the
    same on every device), the gathers on the clouds' device."""
    k = points.shape[1]
    gens = [torch.Generator().manual_seed(int(s) + 1) for s in seeds]
    if n <= k:
        keep = torch.stack([torch.randperm(k, generator=g)[:n] for g in gens]).to(points.device)
        return points.gather(1, keep[..., None].expand(-1, -1, 3))
    draws = [(torch.randint(0, k, (n - k,), generator=g), torch.randint(0, 6, (n - k,), generator=g)) for g in gens]
    i, c = (torch.stack(d).to(points.device) for d in zip(*draws))  # (B, n - K): a point, which neighbour
    near = torch.cdist(points, points).topk(7, largest=False).indices[..., 1:]  # (B, K, 6), self excluded
    j = near.gather(1, i[..., None].expand(-1, -1, 6)).gather(2, c[..., None])[..., 0]
    ends = points.gather(1, torch.cat([i, j], dim=1)[..., None].expand(-1, -1, 3))
    return torch.cat([points, 0.5 * (ends[:, : n - k] + ends[:, n - k :])], dim=1)


@torch.no_grad()
def sample_points(
    model: ShapeModel,
    labels: Sequence[int],
    tags: np.ndarray,
    n_points: int,
    seeds: Sequence[int],
    steps: int = 25,
    guidance: float = 1.0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """Clouds for a batch of conditions: labels (B,) category indices, tags (B, n_tags) 0/1 -> (B, N, 3) float32
    with radius ~1 (not re-normalized), computed on the model's device. guidance 1 is plain conditional sampling;
    0 ignores the condition."""
    if steps < 2 or steps > 1000:
        raise InvalidParameterError(f"steps={steps} is out of range; use 20-50 (2-1000 allowed).")
    if not np.isfinite(guidance) or guidance < 0:
        raise InvalidParameterError(f"guidance={guidance} must be a number >= 0 (1.0-3.0 is typical).")
    report = Reporter(progress, cancel)
    nets, b = model.nets, len(labels)
    lab = model.put(labels, torch.long)
    tag = model.put(np.asarray(tags, dtype=np.float32).reshape(b, -1))
    guided = guidance != 1.0
    if guided:  # one batch: conditional rows, then unconditional rows
        lab = torch.cat([lab, torch.full_like(lab, nets.config.n_categories)])
        tag = torch.cat([tag, torch.zeros_like(tag)])
    sched = solver(steps, model.device)
    alphas = model.put(sched.alphas_cumprod)
    z = model.put(initial_noise(seeds, nets.config.code)) * sched.init_noise_sigma
    report("denoise", 0, steps)
    for i, t in enumerate(sched.timesteps):
        v = nets.denoiser(torch.cat([z, z]) if guided else z, t.expand(len(lab)), lab, tag)
        if guided:
            cond, uncond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        z = sched.step(to_epsilon(z, v, alphas[t]), t, z).prev_sample
        report("denoise", i + 1, steps)
    points = resize_cloud(nets.decoder(z * nets.code_std + nets.code_mean), int(n_points), seeds)  # milliseconds
    return points.float().cpu().numpy()
