"""Moving data to a model's device: one function for every layer (geometry, generators, shapes)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def to_device(x, device: torch.device, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """A numpy array (copied only if not contiguous) or tensor on `device`, in `dtype` if given."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    return t.to(device=device, dtype=dtype)
