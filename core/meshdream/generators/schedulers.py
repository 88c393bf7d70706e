"""Named schedulers, and the few-step samplers distilled models (LCM, TCD, Hyper-SD, SDXL-Lightning) were made for.

Fast multistep solvers by default; any diffusers scheduler instance also works. A few-step model only works with
its own sampler, step count and guidance, so `load_generator` recognizes one (`detect_sampler`) and picks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..errors import InvalidParameterError

SCHEDULERS = ("dpm++", "unipc", "ddim", "euler_a")


def make_scheduler(name_or_instance: Any, config: dict):
    """A scheduler from a name in SCHEDULERS (configured like the model's own) or a ready instance.

    Generators hand the sampler epsilon whatever their model predicts, so named schedulers run on epsilon.
    """
    if not isinstance(name_or_instance, str):
        return name_or_instance
    import diffusers

    config = _epsilon(config)
    name = name_or_instance.lower()
    if name == "dpm++":
        return diffusers.DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=False
        )
    if name == "unipc":
        return diffusers.UniPCMultistepScheduler.from_config(config)
    if name == "ddim":
        return diffusers.DDIMScheduler.from_config(config)
    if name == "euler_a":
        return diffusers.EulerAncestralDiscreteScheduler.from_config(config)
    raise InvalidParameterError(f"Scheduler {name_or_instance!r} is unknown; choose one of {', '.join(SCHEDULERS)}.")


def _epsilon(config: dict) -> dict:
    return {**dict(config), "prediction_type": "epsilon"}


def _lcm(config: dict):
    import diffusers

    return diffusers.LCMScheduler.from_config(_epsilon(config))


def _tcd(config: dict):
    import diffusers

    # TCD's stochastic step (eta, the paper's gamma) is 0.3 by the scheduler's own default: the value TCD and
    # Hyper-SD's 1-step LoRA recommend.
    return diffusers.TCDScheduler.from_config(_epsilon(config))


def _trailing(config: dict):
    """DDIM with "trailing" timesteps, ending at alpha_bar 1. Hyper-SD samples with DDIM trailing; SDXL-Lightning
    with Euler trailing, which on epsilon is the same update: Euler on x / sqrt(alpha_bar) over sigma steps is
    exactly deterministic DDIM, and its last step to sigma 0 is DDIM's to alpha_bar 1 (diffusers' Euler only
    starts from noise scaled by sigma_max rather than the exact sqrt(sigma_max^2 + 1), 0.2 % apart). DDIM stays in
    the variance-preserving space the models and the per-step x0 hook work in."""
    import diffusers

    return diffusers.DDIMScheduler.from_config(_epsilon(config), timestep_spacing="trailing", set_alpha_to_one=True)


@dataclass(frozen=True)
class Sampler:
    """A few-step sampler: its scheduler (from the model's scheduler config) and the steps and classifier-free
    guidance (1: off) the distilled models that use it were made for."""

    scheduler: Callable[[dict], Any]
    steps: int
    guidance: float = 1.0


SAMPLERS = {
    "lcm": Sampler(_lcm, steps=4),  # LCM-LoRA and LCM checkpoints: 2 to 8 steps
    "tcd": Sampler(_tcd, steps=4),  # TCD LoRAs, Hyper-SD's 1-step LoRA
    "trailing": Sampler(_trailing, steps=4),  # Hyper-SD (2/4/8-step LoRAs), SDXL-Lightning (2/4/8-step)
}
# LCM checkpoints take the guidance scale as an embedding (UNet time_cond_proj_dim), not as classifier-free
# guidance: 8.5 is what LCM_Dreamshaper_v7, the reference LCM checkpoint, was distilled around.
EMBEDDED_GUIDANCE = 8.5

# Names (file, folder, cached repo, safetensors title) of published few-step models -> sampler; the first match wins.
_NAMED = (
    (re.compile(r"hyper-?sd.*(?<!\d)1-?step"), "tcd"),  # Hyper-SD's 1-step LoRA is TCD-sampled, the others DDIM
    (re.compile(r"hyper-?sd|lightning"), "trailing"),
    (re.compile(r"tcd"), "tcd"),
    (re.compile(r"lcm"), "lcm"),
)
_STEPS = re.compile(r"(?<!\d)(\d+)[-_ ]?steps?")
_CFG = re.compile(r"(?<![a-z])cfg(?![a-z])")  # Hyper-SD's "CFG" LoRAs keep classifier-free guidance
_TITLE_KEYS = ("modelspec.title", "ss_output_name")


@dataclass(frozen=True)
class FewStep:
    """A recognized few-step model: its sampler and the steps / guidance it was made for."""

    sampler: str
    steps: int
    guidance: Optional[float]  # None: the model family's usual classifier-free guidance


def check_sampler(name: Optional[str]) -> None:
    if name is not None and name not in SAMPLERS:
        raise InvalidParameterError(f"Sampler {name!r} is unknown; choose one of {', '.join(SAMPLERS)}.")


def named_sampler(sampler: str, name: str = "") -> FewStep:
    """`sampler`'s defaults, with the step count and guidance a model's `name` states (e.g. "4step", "CFG")."""
    check_sampler(sampler)
    steps = _STEPS.search(name)
    return FewStep(
        sampler,
        int(steps.group(1)) if steps else SAMPLERS[sampler].steps,
        None if _CFG.search(name) else SAMPLERS[sampler].guidance,
    )


def model_names(path: Path) -> str:
    """The names that identify a model file or folder: its own, its folder's, a Hugging Face cache repo's
    ("models--org--name") and, for .safetensors files, the title in their metadata; lower case."""
    names = [path.name, path.parent.name, *(p for p in path.parts if p.startswith("models--"))]
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        names += [meta[k] for k in _TITLE_KEYS if k in meta]
    return " ".join(names).lower()


def detect_sampler(names: Iterable[str]) -> Optional[FewStep]:
    """The few-step sampler the first recognizably named model in `names` (see model_names) was made for."""
    for name in names:
        for pattern, sampler in _NAMED:
            if pattern.search(name):
                return named_sampler(sampler, name)
    return None
