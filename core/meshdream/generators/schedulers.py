"""Named schedulers. Fast multistep solvers by default; any diffusers scheduler instance also works."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParameterError

SCHEDULERS = ("dpm++", "unipc", "ddim", "euler_a")


def make_scheduler(name_or_instance: Any, config: dict):
    """A scheduler from a name in SCHEDULERS (configured like the model's own) or a ready instance.

    Generators hand the sampler epsilon whatever their model predicts, so named schedulers run on epsilon.
    """
    if not isinstance(name_or_instance, str):
        return name_or_instance
    import diffusers

    config = {**dict(config), "prediction_type": "epsilon"}
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
