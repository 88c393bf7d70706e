"""The shape model's networks: a point-cloud autoencoder and a diffusion denoiser over its shape codes.

Diffusing the 2048 points themselves needs far more training than a laptop-sized budget allows: every point
must learn to find its surface, and what is left over shows as fuzz that a nearest-neighbour test spots at once.
So, as in latent point diffusion (l-GAN, LION), the work is split. An autoencoder learns to squeeze a cloud into
a short code and to decode any code into a crisp cloud (Chamfer loss: on the surface; sliced Wasserstein loss: as
evenly spread as the data); the diffusion model then only has to learn where the codes of each category lie, a
64-number problem that trains in minutes.

- `PointEncoder`: a PointNet (shared per-point MLP, max-pool): order-free and cheap on any number of points.
- `PointDecoder`: an MLP from the code to a fixed number of points (the "FC decoder" that scores best on Chamfer
  metrics); clouds of other sizes are resampled from its output (see sampler.resize_cloud).
- `CodeDenoiser`: a residual MLP whose blocks are modulated (adaLN) by the timestep, the category and the prompt
  words; category `n_categories` and all-zero words mean "unconditional" (for classifier-free guidance).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ShapeModelConfig:
    n_categories: int = 12
    n_tags: int = 6
    code: int = 64  # shape code size
    n_points: int = 2048  # points the decoder emits
    encoder_widths: tuple[int, ...] = (64, 128, 256, 512)
    decoder_widths: tuple[int, ...] = (256, 512, 1024)
    denoiser_width: int = 256
    denoiser_blocks: int = 5

    def __post_init__(self) -> None:
        for name in ("encoder_widths", "decoder_widths"):
            object.__setattr__(self, name, tuple(int(w) for w in getattr(self, name)))

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.GELU(approximate="tanh")]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


class PointEncoder(nn.Module):
    """(B, N, 3) -> (B, code): per-point features, max-pooled, then normalized (LayerNorm without affine: every
    code has zero mean and unit spread, so the diffusion model sees codes of one fixed scale)."""

    def __init__(self, cfg: ShapeModelConfig) -> None:
        super().__init__()
        self.points = _mlp((3, *cfg.encoder_widths))
        self.head = _mlp((cfg.encoder_widths[-1], 256, cfg.code))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.points(x).amax(dim=1))
        return F.layer_norm(z, z.shape[-1:])


class PointDecoder(nn.Module):
    """(B, code) -> (B, n_points, 3)."""

    def __init__(self, cfg: ShapeModelConfig) -> None:
        super().__init__()
        self.n_points = cfg.n_points
        self.net = _mlp((cfg.code, *cfg.decoder_widths, 3 * cfg.n_points))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), self.n_points, 3)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """LayerNorm modulated by the condition (scale, shift, gate: adaLN-zero), then an MLP, added back."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.mod = nn.Linear(dim, 3 * dim)
        self.mlp = _mlp((dim, 2 * dim, dim))
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift, gate = self.mod(c).chunk(3, dim=-1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class CodeDenoiser(nn.Module):
    """Noisy codes (B, code), timesteps (B,), categories (B,), prompt words (B, n_tags) 0/1 -> v-prediction."""

    def __init__(self, cfg: ShapeModelConfig) -> None:
        super().__init__()
        d = cfg.denoiser_width
        self.width = d
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.category = nn.Embedding(cfg.n_categories + 1, d)  # last row: unconditional
        self.tags = nn.Linear(cfg.n_tags, d, bias=False)
        self.inp = nn.Linear(cfg.code, d)
        self.blocks = nn.ModuleList(ResBlock(d) for _ in range(cfg.denoiser_blocks))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.code)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        c = F.silu(self.time(timestep_embedding(t, self.width)) + self.category(labels) + self.tags(tags.float()))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, c)
        return self.out(self.norm(h))


class ShapeNets(nn.Module):
    """The three networks of one shape model, saved and loaded together."""

    def __init__(self, cfg: ShapeModelConfig = ShapeModelConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = PointEncoder(cfg)
        self.decoder = PointDecoder(cfg)
        self.denoiser = CodeDenoiser(cfg)
        # Per-dimension statistics of the training codes: the denoiser works on standardized codes.
        self.register_buffer("code_mean", torch.zeros(cfg.code))
        self.register_buffer("code_std", torch.ones(cfg.code))
