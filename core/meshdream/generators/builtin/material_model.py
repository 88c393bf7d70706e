"""The built-in material model: a small conv net that reads roughness, metallic and surface detail off an unlit view.

Input: the base colour view (zeroed off the mesh), its mask and its luminance slope; the prompt's family (the
built-in vocabulary, or none) enters as a learned bias at the coarsest level, and a masked mean of that level's
features gives every pixel the view's overall look, so a region is judged as part of its material (grey metal vs
grey stone). Three levels (full, 1/2, 1/4 resolution) and a U-Net-style way back keep it to a few ms per view on a CPU.
Output: roughness and metallic (logits) and the detail normal's x, y in the view's frame (x right, y up: image
rows run down), z completing a unit vector; x, y are a learned per-pixel gain times the luminance slope plus a
learned rest, as relief in an unlit albedo shows mostly as shading-like contrast (mortar, weave, stone).
Trained by scripts/train_material_model.py on procedural materials (materials.material_maps); see
weights/material_model.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...progress import CancelToken, ProgressCallback, Reporter
from ...tensors import load_weights, pick_device
from ..base import ModelNotFoundError
from ..material_base import MaterialModel, MaterialViews
from .materials import FAMILIES
from .vocab import WORDS, parse

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "material_model.safetensors"
# colour_slope: the first layer also reads each colour channel's slope, as a joint of the same brightness as its
# bricks (pink brick, grey mortar) shows only as a change of hue.
DEFAULT_CONFIG = {"channels": [12, 24, 48], "families": len(FAMILIES), "colour_slope": False}
MAX_NORMAL_TILT = 0.95  # the largest |(x, y)| of a predicted normal: about 72 degrees
TILE, HALO = 1024, 32  # larger images go through in tiles (with this overlap): a 4096² texture at once needs GBs


def family_index(prompt: str) -> int:
    """1 + the index in FAMILIES of the first family the prompt names, 0 when it names none."""
    for i in parse(prompt)[0]:
        if WORDS[i] in FAMILIES:
            return 1 + FAMILIES.index(WORDS[i])
    return 0


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU())


class MaterialNet(nn.Module):
    """(B, 3, H, W) colour, (B, 1, H, W) mask, (B,) family index -> (B, 4, H, W): roughness and metallic as
    logits (trained with binary cross-entropy, which a sigmoid's saturation cannot stall) and the normal's x, y
    (|xy| <= MAX_NORMAL_TILT). H and W: multiples of 4."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        self.config = cfg
        c1, c2, c3 = cfg["channels"]
        self.enc1 = nn.Sequential(_conv(12 if cfg["colour_slope"] else 6, c1), _conv(c1, c1))
        self.enc2 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2))
        self.enc3 = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3))
        self.family = nn.Embedding(cfg["families"] + 1, c3)
        self.context = nn.Linear(c3, c3)
        self.mid = nn.Sequential(_conv(c3, c3), _conv(c3, c3))
        self.dec2 = _conv(c3 + c2, c2)
        self.dec1 = _conv(c2 + c1, c1)
        self.head = nn.Conv2d(c1, 5, 1)

    def forward(self, colour: torch.Tensor, mask: torch.Tensor, family: torch.Tensor) -> torch.Tensor:
        slope = luminance_slope(colour, mask)
        extra = [image_slope(colour, mask)] if self.config["colour_slope"] else []
        e1 = self.enc1(torch.cat([colour * mask, mask, slope, *extra], 1))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        m3 = F.avg_pool2d(mask, 4)
        pooled = (e3 * m3).sum((2, 3)) / m3.sum((2, 3)).clamp_min(1e-6)
        e3 = self.mid(e3 + (self.family(family) + self.context(pooled))[..., None, None])
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="bilinear"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="bilinear"), e1], 1))
        out = self.head(d1)
        xy = out[:, 3:5] + out[:, 2:3] * slope  # relief mostly follows the shading of the albedo, by a learned gain
        return torch.cat([out[:, :2], MAX_NORMAL_TILT * torch.tanh(xy)], 1)


def luminance_slope(colour: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) slope of the luminance (see image_slope)."""
    lum = (colour * torch.tensor([0.299, 0.587, 0.114], device=colour.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return image_slope(lum, mask)


def image_slope(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 2C, H, W) central differences of each of the C channels along x (right), then y (up; rows run down),
    times 4 (a step of 0.25 reads about 1), zero where a neighbour is off the mask (the silhouette is no relief)."""
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    dx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 4
    dy = (p[..., :-2, 1:-1] - p[..., 2:, 1:-1]) * 4
    inside = -F.max_pool2d(-mask, 3, 1, 1)
    return torch.cat([dx, dy], 1) * inside


def normal_from_xy(xy: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Unit normals from their x, y (along `dim`): z = sqrt(1 - x² - y²), toward the camera."""
    xy = xy * (MAX_NORMAL_TILT / xy.norm(dim=dim, keepdim=True).clamp_min(MAX_NORMAL_TILT)).clamp_max(1)
    z = (1 - (xy**2).sum(dim, keepdim=True)).clamp_min(0).sqrt()
    return torch.cat([xy, z], dim)


class BuiltinMaterialModel(MaterialModel):
    """MeshDream's own material model; views go through the net `batch` at a time, padded to a multiple of 4.
    It reads the texture itself (reads_texture): trained on flat views of materials turned and scaled at random,
    it sees a texture's charts as such views, each texel at full resolution (on rendered views a bevel two
    texels wide is one pixel: bench pbr's normal error is 0.86x flat on views, 0.47x on the texture)."""

    name = "builtin"
    makes_albedo = False
    reads_texture = True

    def __init__(self, net: MaterialNet, device: torch.device, batch: int = 4):
        self.net = net.to(device).eval()
        self.device = device
        self.batch = batch

    @torch.inference_mode()
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
        v, h, w = masks.shape
        ph, pw = -h % 4, -w % 4
        colour = torch.from_numpy(np.ascontiguousarray(images, np.float32)).permute(0, 3, 1, 2)
        mask = torch.from_numpy(np.ascontiguousarray(masks, np.float32))[:, None]
        colour, mask = F.pad(colour, (0, pw, 0, ph)), F.pad(mask, (0, pw, 0, ph))
        family = torch.full((v,), family_index(prompt), dtype=torch.long)
        outs = []
        for start in range(0, v, self.batch):
            report("material", start, v, self.name)
            part = slice(start, start + self.batch)
            args = (colour[part].to(self.device), mask[part].to(self.device), family[part].to(self.device))
            out = self._tiled(*args, report)
            outs.append(out[..., :h, :w].float().cpu())
        report("material", v, v, self.name)
        out = torch.cat(outs)
        return MaterialViews(
            roughness=torch.sigmoid(out[:, 0]).numpy(),
            metallic=torch.sigmoid(out[:, 1]).numpy(),
            normal=normal_from_xy(out[:, 2:]).permute(0, 2, 3, 1).contiguous().numpy(),
        )

    def _tiled(self, colour: torch.Tensor, mask: torch.Tensor, family: torch.Tensor, report: Reporter) -> torch.Tensor:
        """The net's output, in TILE² tiles that each see HALO pixels around them when the image is larger (each
        tile reported, so a large texture can be cancelled between tiles)."""
        h, w = colour.shape[-2:]
        if h <= TILE and w <= TILE:
            return self.net(colour, mask, family)
        out = colour.new_zeros((len(colour), 4, h, w))
        corners = [(y, x) for y in range(0, h, TILE) for x in range(0, w, TILE)]
        for k, (y, x) in enumerate(corners):
            report("material", k, len(corners), f"{self.name}: tile {k + 1} of {len(corners)}")
            y0, x0 = max(y - HALO, 0), max(x - HALO, 0)
            part = (..., slice(y0, min(y + TILE + HALO, h)), slice(x0, min(x + TILE + HALO, w)))
            tile = self.net(colour[part], mask[part], family)
            out[..., y : y + TILE, x : x + TILE] = tile[..., y - y0 : y - y0 + TILE, x - x0 : x - x0 + TILE]
        return out


def load_builtin_material_model(device: str | torch.device = "auto", weights: str | Path | None = None):
    """The shipped material model (or `weights`, a .safetensors with its card beside it); device "auto": CUDA (or
    MPS) when available. A damaged or mismatched file is one ModelNotFoundError that says how to get it back."""
    path = Path(weights) if weights else WEIGHTS
    retrain = "scripts/train_material_model.py (the command is in material_model.json)"
    card, state = load_weights(path, ModelNotFoundError, "The built-in material model", retrain)
    net = MaterialNet(card.get("config"))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelNotFoundError(
            f"The built-in material model's weights ({path}) do not fit its network ({str(exc).splitlines()[0]}); "
            f"reinstall meshdream or retrain them with {retrain}."
        ) from None
    return BuiltinMaterialModel(net, pick_device(device))
