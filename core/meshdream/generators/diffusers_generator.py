"""Generators backed by diffusers model components: SD 1.5 / SDXL + depth ControlNet, SD 2 depth, inpainting.

The families differ only in how the UNet is conditioned: a ControlNet adds residuals from the depth image; the
SD 2 depth UNet takes the depth map as a fifth input channel; inpainting UNets take the mask and the masked
image's latents as five more channels. SDXL adds a second text encoder, pooled text embeddings and size ids.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .base import GenerationRequest, Generator, GeneratorKindError, guided_rows
from .sampling import _resize

FAMILIES = ("controlnet", "depth_unet", "inpaint")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Components:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    text_encoder_2: Any = None
    tokenizer_2: Any = None
    controlnet: Any = None
    image_encoder: Any = None  # CLIP vision model of a loaded IP-Adapter


@dataclass
class PromptEmbeds:
    embeds: torch.Tensor  # (2B, L, D): negative first, then positive
    pooled: Optional[torch.Tensor] = None  # SDXL (2B, D2)


class DiffusersGenerator(Generator):
    def __init__(
        self,
        parts: Components,
        family: str,
        name: str,
        device: torch.device,
        dtype: torch.dtype,
        prediction_type: str = "epsilon",
        controlnet_scale: float = 1.0,
    ):
        self.parts = parts
        # The model's own output type; the scheduler is always run on epsilon (see predict_noise).
        self.prediction_type = prediction_type
        self.family = family
        self.name = name
        self.device, self.dtype = device, dtype
        self.scheduler = parts.scheduler
        self.xl = parts.text_encoder_2 is not None
        self.controlnet_scale = controlnet_scale
        vae_cfg = parts.vae.config
        self.latent_factor = 2 ** (len(vae_cfg.block_out_channels) - 1)
        self.latent_channels = vae_cfg.latent_channels
        self.native_resolution = int(parts.unet.config.sample_size) * self.latent_factor
        self.capabilities = frozenset(
            {
                "controlnet": ("depth", "img2img", "inpaint"),
                "depth_unet": ("depth", "img2img", "inpaint"),
                "inpaint": ("img2img", "inpaint"),
            }[family]
        )
        self.default_guidance = 5.0 if self.xl else 7.5
        self.sampler: Optional[str] = None  # the few-step sampler in use (schedulers.SAMPLERS), if any
        # LCM checkpoints take the guidance scale as an embedding of w (timestep_cond) and run without
        # classifier-free guidance: one UNet row per image.
        self.guidance_embedded = parts.unet.config.time_cond_proj_dim is not None
        self._controlnet_embeds = (
            getattr(getattr(parts.controlnet, "config", None), "time_cond_proj_dim", None) is not None
        )
        # SDXL's VAE overflows in fp16 (config.force_upcast): run it in float32. SD 1.x/2.x VAEs carry the same flag
        # by default but run fine in fp16, as diffusers' own SD pipelines run them.
        self._vae_dtype = torch.float32 if self.xl and getattr(vae_cfg, "force_upcast", False) else dtype
        if parts.vae.dtype != self._vae_dtype:
            parts.vae.to(dtype=self._vae_dtype)

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.parts.unet, self.parts.vae, self.parts.controlnet) if m is not None]

    def networks(self) -> list[torch.nn.Module]:
        p = self.parts
        every = (p.unet, p.vae, p.controlnet, p.text_encoder, p.text_encoder_2, p.image_encoder)
        return [m for m in every if m is not None and not any(m is o for o in self.offload)]

    @contextmanager
    def _using(self, *modules):
        """Bring offloaded networks (memory="minimal") to the device for one use, and back to the CPU after it."""
        moved = [m for m in modules if m is not None and any(m is o for o in self.offload)]
        for m in moved:
            m.to(self.device)
        try:
            yield
        finally:
            for m in moved:
                m.to("cpu")

    # --- prompts --------------------------------------------------------------------------------------------
    def _encode_with(self, tokenizer, encoder, texts: list[str], xl: bool):
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)
        out = encoder(ids, output_hidden_states=xl)
        if not xl:
            return out[0], None
        # SDXL conditions on the penultimate layer; the second encoder also gives the pooled embedding.
        return out.hidden_states[-2], out[0]

    @torch.no_grad()
    def encode_prompt(self, request: GenerationRequest) -> PromptEmbeds:
        texts = [request.negative_prompt] * len(request.prompts) + list(request.prompts)
        p = self.parts
        with self._using(p.text_encoder, p.text_encoder_2):
            emb, _ = self._encode_with(p.tokenizer, p.text_encoder, texts, self.xl)
            if not self.xl:
                return PromptEmbeds(emb.to(self.dtype))
            emb2, pooled = self._encode_with(p.tokenizer_2, p.text_encoder_2, texts, True)
        return PromptEmbeds(torch.cat([emb, emb2], dim=-1).to(self.dtype), pooled.to(self.dtype))

    # --- codec ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        vae, dt = self.parts.vae, self._vae_dtype
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        out = [
            vae.encode(self.put(images[s : s + self.vae_batch], dt) * 2 - 1).latent_dist.mean
            for s in range(0, len(images), self.vae_batch)
        ]
        return ((torch.cat(out) - shift) * vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae, dt = self.parts.vae, self._vae_dtype
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        out = [
            # float32 and the CPU as soon as decoded: only one chunk of full-size images is on the device at once
            ((vae.decode(latents[s : s + self.vae_batch].to(dt) / vae.config.scaling_factor + shift).sample + 1) / 2)
            .float()
            .clamp(0, 1)
            .cpu()
            for s in range(0, len(latents), self.vae_batch)
        ]
        return torch.cat(out)

    # --- conditioning and noise prediction ------------------------------------------------------------------
    def prepare(self, request: GenerationRequest) -> dict:
        h, w = request.size
        lh, lw = h // self.latent_factor, w // self.latent_factor
        cond: dict = {}
        if self.family == "controlnet" and request.depth is not None:
            cond["control"] = request.depth.to(self.device, self.dtype).repeat(1, 3, 1, 1)
        if self.family == "depth_unet":
            # Without a depth map (e.g. inpainting a flat UV image) the model sees a flat surface.
            depth = request.depth if request.depth is not None else torch.full((len(request.prompts), 1, h, w), 0.5)
            depth = depth.to(self.device, torch.float32)
            cond["depth_latent"] = (_resize(depth, (lh, lw)) * 2 - 1).to(self.dtype)
        if self.family == "inpaint":
            n = len(request.prompts)
            mask = request.inpaint_mask if request.inpaint_mask is not None else torch.ones(n, 1, h, w)
            init = request.init_images if request.init_images is not None else torch.zeros(n, 3, h, w)
            mask = (mask.to(self.device, torch.float32) > 0).float()
            cond["native_inpaint"] = True
            cond["mask_latent"] = _resize(mask, (lh, lw), "nearest").to(self.dtype)
            cond["masked_latents"] = self.encode(init.to(self.device) * (1 - mask))
        if self.xl:
            ids = torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=self.dtype)
            cond["time_ids"] = ids
        if self.guidance_embedded:
            dim = self.parts.unet.config.time_cond_proj_dim
            cond["guidance_embedding"] = guidance_embedding(request.guidance, dim).to(self.device, self.dtype)
        if self.parts.image_encoder is not None:
            cond["image_embeds"] = self._image_embeds(request.reference_image, len(request.prompts))
        elif request.reference_image is not None:
            raise GeneratorKindError(
                f"{self.name} has no IP-Adapter to use a reference image with; load one with ip_adapter=..."
            )
        return cond

    @torch.no_grad()
    def _image_embeds(self, reference: Optional[torch.Tensor], n: int) -> torch.Tensor:
        """(2n, 1, D): zeros for the negative half; the reference picture's CLIP embedding (or zeros) for the rest."""
        enc = self.parts.image_encoder
        dim = enc.config.projection_dim
        pos = torch.zeros(1, dim, device=self.device, dtype=self.dtype)
        if reference is not None:
            size = enc.config.image_size
            x = torch.nn.functional.interpolate(
                reference[:1].float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 1)
            mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
            x = ((x - mean) / std).to(self.device, enc.dtype)
            with self._using(enc):
                pos = enc(pixel_values=x).image_embeds.to(self.dtype)
        return torch.cat([torch.zeros_like(pos).expand(n, -1), pos.expand(n, -1)])[:, None, :]

    def predict_noise(self, latents, t, prompt: PromptEmbeds, cond: dict, index: slice, guidance: float):
        use_cfg = guidance > 1.0 and not self.guidance_embedded
        x = torch.cat([latents, latents]) if use_cfg else latents
        reps = 2 if use_cfg else 1
        emb = guided_rows(prompt.embeds, index, use_cfg)
        added: dict = {}
        if self.xl:
            added = {
                "text_embeds": guided_rows(prompt.pooled, index, use_cfg),
                "time_ids": cond["time_ids"].repeat(len(emb), 1),
            }
        kwargs: dict = {"added_cond_kwargs": added} if added else {}
        if self.guidance_embedded:
            kwargs["timestep_cond"] = cond["guidance_embedding"].expand(len(emb), -1)
        if self.family == "depth_unet":
            x = torch.cat([x, cond["depth_latent"][index].repeat(reps, 1, 1, 1)], dim=1)
        elif self.family == "inpaint":
            x = torch.cat(
                [
                    x,
                    cond["mask_latent"][index].repeat(reps, 1, 1, 1),
                    cond["masked_latents"][index].repeat(reps, 1, 1, 1),
                ],
                dim=1,
            )
        if "control" in cond:
            # A ControlNet made for the base model has no guidance embedding of its own.
            ctrl_kwargs = {k: v for k, v in kwargs.items() if k != "timestep_cond" or self._controlnet_embeds}
            down, mid = self.parts.controlnet(
                x,
                t,
                encoder_hidden_states=emb,
                controlnet_cond=cond["control"][index].repeat(reps, 1, 1, 1),
                conditioning_scale=self.controlnet_scale,
                return_dict=False,
                **ctrl_kwargs,
            )
            kwargs["down_block_additional_residuals"] = down
            kwargs["mid_block_additional_residual"] = mid
        if "image_embeds" in cond:  # the UNet (not the ControlNet) also attends to the reference image
            kwargs["added_cond_kwargs"] = {**added, "image_embeds": [guided_rows(cond["image_embeds"], index, use_cfg)]}
        out = self.parts.unet(x, t, encoder_hidden_states=emb, return_dict=False, **kwargs)[0]
        if use_cfg:
            uncond, text = out.chunk(2)
            out = uncond + guidance * (text - uncond)
        if self.prediction_type == "v_prediction":
            a = self.alpha_bar(t).to(out.dtype)
            out = a.sqrt() * out + (1 - a).sqrt() * latents  # v -> epsilon
        return out


def guidance_embedding(guidance: float, dim: int) -> torch.Tensor:
    """(1, dim) sinusoidal embedding of w = guidance - 1, as LCM checkpoints were distilled with (diffusers'
    LatentConsistencyModelPipeline.get_guidance_scale_embedding)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    angles = (guidance - 1.0) * 1000.0 * freqs[None]
    return torch.nn.functional.pad(torch.cat([angles.sin(), angles.cos()], dim=1), (0, dim % 2))
