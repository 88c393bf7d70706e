"""The built-in offline texture model (trained by scripts/train_texture_model.py; see its model card)."""

from __future__ import annotations

from .base import ModelNotFoundError


def load_builtin(device="auto", scheduler="dpm++"):
    raise ModelNotFoundError(
        "The built-in texture model is not shipped yet. Pass a diffusers model instead: a local folder or a cached "
        "Hugging Face id, e.g. load_generator('stable-diffusion-v1-5/stable-diffusion-v1-5', "
        "controlnet='lllyasviel/control_v11f1p_sd15_depth')."
    )
