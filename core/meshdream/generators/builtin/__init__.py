"""The built-in offline texture model (trained by scripts/train_texture_model.py; see weights/texture_model.json)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ...errors import InvalidParameterError, MeshDreamWarning
from ...tensors import load_weights, pick_device
from ..base import GenerationRequest, Generator, ModelNotFoundError, guided_rows
from ..schedulers import make_scheduler
from .model import TextureModel, geometry_channels, pad_ids
from .vocab import WORDS, parse

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "texture_model.safetensors"
CARD = WEIGHTS.with_suffix(".json")


def network_dtype(dtype: torch.dtype | None, device: torch.device) -> torch.dtype:
    """The network's arithmetic. None: bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX: the network
    runs 2-3x faster at the same card figures, see weights/texture_model.json "precision"), float32 elsewhere
    (emulated bfloat16 is slower, and a GPU runs this small network in milliseconds anyway)."""
    if dtype is None:
        native = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return torch.bfloat16 if native else torch.float32
    if dtype not in (torch.float32, torch.bfloat16):
        raise InvalidParameterError(f"The built-in model runs in torch.float32 or torch.bfloat16, not {dtype}.")
    return dtype


class BuiltinGenerator(Generator):
    """Pixel-space generator: the "latents" are the image itself in [-1, 1]."""

    name = "builtin"
    capabilities = frozenset({"depth", "img2img", "inpaint"})
    latent_factor = 1
    latent_channels = 3
    native_resolution = 128
    default_texture_size = 512
    default_steps = 20
    default_guidance = 3.0
    uses_normals = True
    material_model = "builtin"

    def __init__(self, model: TextureModel, scheduler, device: torch.device, card: dict | None = None, dtype=None):
        """card: the model card; its "defaults" (view_resolution, texture_size, steps) and "guidance" (picked by
        scripts/eval_texture_model.py on validation views) replace the class's. dtype: the network's arithmetic (see
        network_dtype); the sampler's state (self.dtype) stays float32 either way."""
        self.model = model.to(device).eval()
        card = card or {}
        defaults = card.get("defaults", {})
        self.native_resolution = int(defaults.get("view_resolution", self.native_resolution))
        self.default_texture_size = int(defaults.get("texture_size", self.default_texture_size))
        self.default_steps = int(defaults.get("steps", self.default_steps))
        self.default_guidance = float(card.get("guidance", self.default_guidance))
        self.scheduler = scheduler
        self.device = device
        self.dtype = torch.float32
        self.network_dtype = network_dtype(dtype, device)
        self.unknown_words: list[str] = []

    def modules(self) -> list[torch.nn.Module]:
        return [self.model.unet]

    def networks(self) -> list[torch.nn.Module]:
        return [self.model]

    def encode_prompt(self, request: GenerationRequest) -> torch.Tensor:
        parsed = [parse(p) for p in request.prompts]
        unknown = sorted({w for _, u in parsed for w in u})
        self.unknown_words = unknown
        if unknown:
            warnings.warn(
                f"The built-in model does not know {', '.join(repr(w) for w in unknown)} and ignores it; it knows "
                f"these words: {', '.join(WORDS[1:])}.",
                MeshDreamWarning,
                stacklevel=4,
            )
        ids = [i for i, _ in parsed]
        neg = [[] for _ in ids]  # the empty prompt is the unconditional branch
        with torch.no_grad():
            return self.model.prompt(pad_ids(neg + ids, self.device))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, torch.float32) * 2 - 1

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents.float() + 1) / 2).clamp(0, 1).cpu()

    def preview_rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixel space: the latents are the image, so the preview is exact (and stays on the device)."""
        return ((latents.float() + 1) / 2).clamp(0, 1)

    def prepare(self, request: GenerationRequest) -> dict:
        n = len(request.prompts)
        h, w = request.size
        depth = request.depth if request.depth is not None else torch.full((n, 1, h, w), 0.5)
        geo = geometry_channels(
            depth.to(self.device, torch.float32),
            None if request.normal is None else request.normal.to(self.device, torch.float32),
        )
        known_mask = torch.zeros(n, 1, h, w, device=self.device)
        known = torch.zeros(n, 3, h, w, device=self.device)
        if request.inpaint_mask is not None and request.init_images is not None:
            known_mask = (request.inpaint_mask.to(self.device) <= 0).float()
            known = (request.init_images.to(self.device, torch.float32) * 2 - 1) * known_mask
        return {"cond": torch.cat([geo, known, known_mask], dim=1), "native_inpaint": True}

    @torch.no_grad()
    def predict_noise(self, latents, t, prompt, cond, index, guidance):
        c = cond["cond"][index]
        use_cfg = guidance != 1.0
        x = torch.cat([latents, latents]) if use_cfg else latents
        emb = guided_rows(prompt, index, use_cfg)
        tt = t.expand(x.shape[0]).to(self.device)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.network_dtype == torch.bfloat16):
            v = self.model(x, tt, torch.cat([c, c]) if use_cfg else c, emb).float()
        if use_cfg:
            uncond, text = v.chunk(2)
            v = uncond + guidance * (text - uncond)
        a = self.alpha_bar(t)
        return a.sqrt() * v + (1 - a).sqrt() * latents  # v -> epsilon


def load_builtin(
    device="auto", scheduler=None, weights: str | Path | None = None, dtype: torch.dtype | None = None
) -> BuiltinGenerator:
    """weights: another .safetensors with its model card (.json) beside it (e.g. a training run's); default: shipped.
    scheduler: None: the card's defaults.scheduler (the one its quality-vs-steps curve picked), else DPM-Solver++.
    dtype: None (bfloat16 on CPUs that compute it natively, else float32), torch.bfloat16, or torch.float32 (the same
    images on every CPU)."""
    card, state = load_weights(
        Path(weights) if weights else WEIGHTS,
        ModelNotFoundError,
        "The built-in model",
        "scripts/train_texture_model.py (see weights/texture_model.json for the command)",
    )
    model = TextureModel(card["config"])
    model.load_state_dict(state)
    sched = make_scheduler(scheduler or card.get("defaults", {}).get("scheduler", "dpm++"), card["scheduler"])
    return BuiltinGenerator(model, sched, pick_device(device), card, dtype)
