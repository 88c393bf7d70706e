"""Tensors between layers: picking a device and moving data to it, reading the weights the project ships (every
layer: geometry, generators, shapes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """cuda > mps > cpu unless a device is named."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def to_device(x, device: torch.device, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """A numpy array (copied only if not contiguous) or tensor on `device`, in `dtype` if given."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    return t.to(device=device, dtype=dtype)


def load_weights(path: Path, missing: type[Exception], what: str, retrain: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model card, float32 state dict) of a .safetensors file and the .json card beside it, as every model the
    project trains is shipped; `missing` (the caller's error type) says what is absent or damaged and how to get it
    back."""
    from safetensors.torch import load_file

    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        raise missing(
            f"{what}'s weights ({path}) or model card ({card_path.name}) are missing; reinstall meshdream or retrain "
            f"them with {retrain}."
        )
    try:
        return json.loads(card_path.read_text()), {k: v.float() for k, v in load_file(str(path)).items()}
    except Exception as exc:  # a truncated or overwritten file: safetensors and json raise their own types
        raise missing(
            f"{what}'s weights ({path}) or model card ({card_path.name}) are damaged ({exc}); reinstall meshdream or "
            f"retrain them with {retrain}."
        ) from None
