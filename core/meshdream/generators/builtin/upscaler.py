"""The built-in super-resolution network: a small conv net that adds learned detail to a bicubic upsampling.

One trunk at the low resolution and one PixelShuffle head per scale (x2, x4), so a single small file serves both
factors and all the compute happens on the input grid. The net is bias-free (PReLU, no conv biases) and its first
layer's kernels sum to zero: a flat region then gets exactly zero residual, i.e. the bicubic (= its own) colour, so
flat charts keep their colour to the bit, and the output scales with the input's contrast. Trained by
scripts/train_upscale_model.py on procedural materials; see weights/upscale_model.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InvalidParameterError
from ...tensors import load_weights, pick_device
from ..base import ModelNotFoundError

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "upscale_model.safetensors"
DEFAULT_CONFIG = {"channels": 32, "layers": 6, "scales": [2, 4]}


class UpscaleNet(nn.Module):
    """(B, 3, h, w) in [0, 1] -> (B, 3, h * scale, w * scale): bicubic plus a learned residual."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        self.config = cfg
        c = cfg["channels"]
        self.head_in = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.act_in = nn.PReLU(c)
        body: list[nn.Module] = []
        for _ in range(cfg["layers"]):
            body += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.PReLU(c)]
        self.body = nn.Sequential(*body)
        self.heads = nn.ModuleDict({str(s): nn.Conv2d(c, 3 * s * s, 3, padding=1, bias=False) for s in cfg["scales"]})

    @property
    def receptive_radius(self) -> int:
        """Input texels a pixel's output depends on, each way: one per 3x3 conv."""
        return 2 + self.config["layers"]

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        w = self.head_in.weight
        feat = self.act_in(F.conv2d(x, w - w.mean((2, 3), keepdim=True), padding=1))  # zero-sum: blind to flat
        feat = feat + self.body(feat)
        base = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        return base + F.pixel_shuffle(self.heads[str(scale)](feat), scale)


def load_builtin_upscaler(
    scale: int, device: str | torch.device = "auto", weights: str | Path | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """A tile function (h, w, 3) float32 -> (h * scale, w * scale, 3) with the shipped weights (or `weights`, a
    .safetensors with its card beside it); device "auto": CUDA (or MPS) when available. The tile is edge-padded by
    the receptive radius and the result cropped: no texel kept has seen the convolutions' zero padding, which would
    darken a tile's rim (the overlap blend in upscale_texture hides what edge-padding still changes)."""
    card, state = load_weights(
        Path(weights) if weights else WEIGHTS,
        ModelNotFoundError,
        "The built-in upscaler",
        "scripts/train_upscale_model.py (the command is in upscale_model.json)",
    )
    model = UpscaleNet(card["config"])
    if scale not in model.config["scales"]:
        raise InvalidParameterError(
            f"The built-in upscaler has no x{scale} head (it has {', '.join(f'x{s}' for s in model.config['scales'])})."
        )
    model.load_state_dict(state)
    dev = pick_device(device)
    model.to(dev).eval()
    pad = model.receptive_radius

    @torch.inference_mode()
    def run(tile: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))[None].to(dev)
        y = model(F.pad(x, (pad,) * 4, mode="replicate"), scale)
        y = y[..., pad * scale : -pad * scale, pad * scale : -pad * scale]
        return y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    return run
