"""The built-in texture model: a small pixel-space UNet conditioned on geometry and a bag of prompt words.

Input channels: noisy image (3), depth (1, near 1 .. far 0.2, background 0), camera-space normal (3), object mask
(1), known pixels (3) and their mask (1), so one network does depth-conditioned generation and inpainting. The
prompt is a mean of learned word embeddings fed where diffusers' UNet2DModel takes a class embedding; word id 0
(the empty prompt) is the unconditional branch of classifier-free guidance. It predicts v. Self-attention runs at
the coarsest level only (and in the middle block): with four levels that is 16² tokens for a 128 px view, enough
for a pattern's period and phase to agree across the whole view at little cost (v1's three levels attended at 32²,
a fifth of its compute on a CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from .vocab import WORDS

GEOMETRY_CHANNELS = 1 + 3 + 1  # depth, normal, object mask
KNOWN_CHANNELS = 3 + 1  # known pixels, known mask
DEFAULT_CONFIG = {
    "block_out_channels": [32, 64, 128, 192],
    "layers_per_block": 1,
    "embed_dim": 64,
    "sample_size": 128,
}


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, out_dim: int):
        super().__init__()
        self.words = nn.Embedding(len(WORDS), embed_dim)
        self.proj = nn.Sequential(nn.Linear(embed_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) word ids padded with -1 -> (B, out_dim); an all-padding row is the empty prompt."""
        valid = ids >= 0
        empty = ~valid.any(dim=1)
        ids = torch.where(valid, ids, torch.zeros_like(ids))
        valid = valid | (empty[:, None] & (torch.arange(ids.shape[1], device=ids.device) == 0))
        emb = (self.words(ids) * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
        return self.proj(emb)


class TextureModel(nn.Module):
    def __init__(self, config: dict | None = None):
        super().__init__()
        from diffusers import UNet2DModel

        cfg = {**DEFAULT_CONFIG, **(config or {})}
        self.config = cfg
        ch = cfg["block_out_channels"]
        attn = [False] * (len(ch) - 1) + [True]
        self.unet = UNet2DModel(
            sample_size=cfg["sample_size"],
            in_channels=3 + GEOMETRY_CHANNELS + KNOWN_CHANNELS,
            out_channels=3,
            block_out_channels=tuple(ch),
            layers_per_block=cfg["layers_per_block"],
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
            class_embed_type="identity",
            norm_num_groups=16,
            attention_head_dim=32,
        )
        self.prompt = PromptEncoder(cfg["embed_dim"], ch[0] * 4)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([x, cond], dim=1), t, class_labels=prompt_emb).sample


def pad_ids(batch: list[list[int]], device=None) -> torch.Tensor:
    width = max(1, max((len(b) for b in batch), default=1))
    out = torch.full((len(batch), width), -1, dtype=torch.long)
    for i, b in enumerate(batch):
        out[i, : len(b)] = torch.tensor(b, dtype=torch.long)
    return out.to(device)


def geometry_channels(depth: torch.Tensor, normal: torch.Tensor | None) -> torch.Tensor:
    """(B, 5, H, W): depth, camera-space normal (flat facing the camera if unknown), object mask."""
    mask = (depth > 0).to(depth.dtype)
    if normal is None:
        normal = torch.zeros(depth.shape[0], 3, *depth.shape[-2:], dtype=depth.dtype, device=depth.device)
        normal[:, 2] = 1.0
    return torch.cat([depth, normal * mask, mask], dim=1)
