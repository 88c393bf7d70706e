"""Loading the shipped shape model and sampling point clouds from it with a fast multistep solver.

Training noises clouds on a diffusers DDPM schedule (1000 steps, v-prediction); sampling runs DPM-Solver++
(2nd order) on the same schedule in 20-50 steps, with classifier-free guidance. Every cloud's starting noise
comes from its own seed, so a shape depends on its seed alone, not on what else shares the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import InvalidParameterError, MeshDreamError
from ..progress import CancelToken, ProgressCallback, Reporter
from .model import DenoiserConfig, PointDenoiser

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "shape_model.safetensors"
# The DDPM schedule the model was trained on (PVD's: linear betas over 1000 steps).
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "v_prediction",
    "clip_sample": False,
}
# Clean-point predictions are kept inside this radius (the data's is 1): a safety net for stray points.
CLIP_RADIUS = 1.05


class ShapeModelNotFoundError(MeshDreamError, FileNotFoundError):
    """The shape model's weights are missing."""


@dataclass
class ShapeModel:
    net: PointDenoiser
    card: dict  # the model card (shape_model.json): categories, tags, data scale, defaults, training record

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
        return float(self.card.get("guidance_default", 1.5))

    @property
    def scale(self) -> float:
        """Normalized clouds (radius 1) are multiplied by this before noising, so coordinates have std ~1."""
        return float(self.card.get("data_scale", 1.0))


def ddpm_scheduler():
    import diffusers

    return diffusers.DDPMScheduler(**SCHEDULE)


def solver(steps: int):
    """DPM-Solver++ (2M) on the training schedule; it is fed noise predictions (see `to_epsilon`)."""
    import diffusers

    s = diffusers.DPMSolverMultistepScheduler.from_config(
        ddpm_scheduler().config,
        prediction_type="epsilon",
        algorithm_type="dpmsolver++",
        solver_order=2,
        final_sigmas_type="zero",
    )
    s.set_timesteps(steps)
    return s


def save_shape_model(net: PointDenoiser, card: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().float() for k, v in net.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(net.config.to_dict())})
    path.with_suffix(".json").write_text(json.dumps({**card, "config": net.config.to_dict()}, indent=2) + "\n")


@lru_cache(maxsize=4)
def load_shape_model(path: Optional[str] = None) -> ShapeModel:
    """The denoiser and its card from `path` (default: the shipped weights), cached per path, CPU, eval mode."""
    from safetensors.torch import load_file

    path = Path(path) if path else WEIGHTS
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        raise ShapeModelNotFoundError(
            f"Shape model weights '{path}' or its card '{card_path.name}' are missing; reinstall meshdream or "
            "retrain them with `python scripts/train_shape_model.py`."
        )
    card = json.loads(card_path.read_text())
    net = PointDenoiser(DenoiserConfig(**card["config"]))
    net.load_state_dict(load_file(str(path)))
    net.eval().requires_grad_(False)
    return ShapeModel(net, card)


def to_epsilon(x: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor, max_radius: float) -> torch.Tensor:
    """The noise prediction that a v-prediction implies, after pulling every predicted clean point inside
    `max_radius` (the data never leaves it; an untrained corner of the model could)."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    x0 = a * x - s * v
    r = x0.norm(dim=-1, keepdim=True)
    x0 = x0 * (r.clamp(max=max_radius) / r.clamp_min(1e-12))
    return (x - a * x0) / s


def initial_noise(seeds: Sequence[int], n_points: int) -> torch.Tensor:
    """One cloud of Gaussian noise per seed (per-seed generators: batching does not change a shape)."""
    return torch.stack([torch.randn(n_points, 3, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@torch.inference_mode()
def sample_points(
    model: ShapeModel,
    labels: Sequence[int],
    tags: np.ndarray,
    n_points: int,
    seeds: Sequence[int],
    steps: int = 25,
    guidance: float = 1.5,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """Clouds for a batch of conditions: labels (B,) category indices, tags (B, n_tags) 0/1 -> (B, N, 3) float32
    with radius ~1 (not re-normalized). guidance 1 is plain conditional sampling; 0 ignores the condition."""
    if steps < 2 or steps > 1000:
        raise InvalidParameterError(f"steps={steps} is out of range; use 20-50 (2-1000 allowed).")
    if not np.isfinite(guidance) or guidance < 0:
        raise InvalidParameterError(f"guidance={guidance} must be a number >= 0 (1.0-3.0 is typical).")
    report = Reporter(progress, cancel)
    net, b = model.net, len(labels)
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    tag = torch.as_tensor(np.asarray(tags, dtype=np.float32).reshape(b, -1))
    guided = guidance != 1.0
    if guided:  # one batch: conditional rows, then unconditional rows
        lab = torch.cat([lab, torch.full_like(lab, net.config.n_categories)])
        tag = torch.cat([tag, torch.zeros_like(tag)])
    sched = solver(steps)
    alphas = sched.alphas_cumprod
    x = initial_noise(seeds, n_points) * sched.init_noise_sigma
    report("denoise", 0, steps)
    for i, t in enumerate(sched.timesteps):
        local = net.local(x)
        inp, local = (torch.cat([x, x]), torch.cat([local, local])) if guided else (x, local)
        v = net(inp, t.expand(len(inp)), lab, tag, local)
        if guided:
            cond, uncond = v.chunk(2)
            v = uncond + guidance * (cond - uncond)
        x = sched.step(to_epsilon(x, v, alphas[t], CLIP_RADIUS * model.scale), t, x).prev_sample
        report("denoise", i + 1, steps)
    return (x / model.scale).numpy().astype(np.float32)
