"""The Generator interface every texture model implements (diffusers pipelines and the built-in model alike).

A generator exposes the parts of a diffusion model, not a finished pipeline: prompt encoding, the image <->
latent codec and one guided noise prediction. The sampling loop (`sampling.sample`) is shared, which is what lets
texturing strategies reach into every denoising step (synchronized views rewrite each step's prediction).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..errors import MeshDreamError
from ..tensors import to_device


class GeneratorKindError(MeshDreamError, ValueError):
    """The model cannot do what was asked (e.g. an inpainting model asked for depth-conditioned generation)."""


class ModelNotFoundError(MeshDreamError, FileNotFoundError):
    """A model spec names nothing that exists locally."""


CAPABILITIES = ("depth", "img2img", "inpaint")
# Approximate linear map from SD 1.x/2.x/XL 4-channel (scaled) latents to RGB in [-1, 1] (keturn's SD 1.5 fit):
# far cheaper than the VAE, good enough for a live preview.
SD_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


@dataclass
class GenerationRequest:
    """One batch of images to generate; tensors are (B, C, H, W) float in [0, 1] on any device."""

    prompts: list[str]  # one per image
    negative_prompt: str = ""
    depth: Optional[torch.Tensor] = None  # (B, 1, H, W) near = 1, far ~0.2, background 0
    normal: Optional[torch.Tensor] = None  # (B, 3, H, W) camera-space unit normals (models that use them)
    init_images: Optional[torch.Tensor] = None  # (B, 3, H, W) start (img2img) or known pixels (inpaint)
    strength: float = 1.0  # img2img: fraction of the noise schedule re-run (1 = from pure noise)
    # (B, 1, H, W) in [0, 1]: 1 = generate, 0 = keep init_images, m between = keep for the first (1 - m) of the
    # steps, then refine (models with inpainting UNets treat every m > 0 as generate)
    inpaint_mask: Optional[torch.Tensor] = None
    steps: int = 20
    guidance: float = 7.5
    seed: int = 0
    reference_image: Optional[torch.Tensor] = None  # (1, 3, H, W) style reference for models with an IP-Adapter
    extra: dict = field(default_factory=dict)  # strategy-specific conditioning a generator may use

    @property
    def size(self) -> tuple[int, int]:
        for t in (self.depth, self.init_images, self.inpaint_mask):
            if t is not None:
                return int(t.shape[-2]), int(t.shape[-1])
        raise GeneratorKindError("A request needs a depth map, an init image or a mask to fix the image size.")


class Generator(ABC):
    """A diffusion model split into the parts the shared sampler needs."""

    name: str = "generator"
    capabilities: frozenset[str] = frozenset()
    latent_factor: int = 8  # image pixels per latent pixel
    latent_channels: int = 4
    # What texturing uses unless told otherwise: the view resolution the model was trained at, a texture with about
    # two texels per view pixel, and its sampler settings (`default_steps`, `default_guidance`).
    native_resolution: int = 512
    default_texture_size: int = 1024
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    scheduler: Any = None  # a diffusers scheduler
    max_batch: int = 16  # images per denoiser call (twice the rows with guidance); memory presets lower it
    vae_batch: int = 16  # images per latent encode / decode call: at full resolution the VAE needs the most memory
    memory: str = "none"  # the memory preset in force (see load_generator)
    offload: tuple = ()  # networks kept on the CPU between uses (memory="minimal" on a GPU)
    default_steps: int = 20
    default_guidance: float = 7.5
    # The material model (load_material_model spec) made for this family's textures; None: it has no material path
    # of its own, and texture_mesh(pbr=True) falls back to the built-in one with a warning.
    material_model: Optional[str] = None
    uses_normals: bool = False  # whether requests need camera-space normals (costly to render at full size)
    cuda_graphs: bool = True  # on CUDA, replay each denoiser call as a CUDA graph (generators/graphs.py)

    def put(self, x, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """A numpy array or tensor on this generator's device (in `dtype` if given): the one way data reaches
        the model, so nothing in a strategy or a per-step hook mixes devices."""
        return to_device(x, self.device, dtype)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """The schedule's cumulative alpha at timestep `t` (float32), from a copy kept on the device: nothing is
        uploaded per denoising step."""
        cache = self.__dict__.setdefault("_alpha_bar", {})
        key = (self.device, id(self.scheduler))
        if key not in cache:
            cache.clear()
            cache[key] = self.put(self.scheduler.alphas_cumprod, torch.float32)
        # index_select, not table[t]: indexing with a 0-dim tensor reads it on the host (a sync per step, and an
        # op a CUDA graph capture cannot contain)
        return cache[key].index_select(0, t.reshape(-1).long()).reshape(t.shape)

    def to(self, device: str | torch.device) -> "Generator":
        """Move the model to `device` (e.g. "cuda", "cuda:1", "cpu"); returns the generator."""
        device = torch.device(device)
        for module in self.networks():
            module.to(device)
        self.device = device
        return self

    def networks(self) -> list[torch.nn.Module]:
        """Every network of the model (what `to` moves)."""
        return self.modules()

    def check(self, request: GenerationRequest) -> None:
        """Raise GeneratorKindError when the request needs something this model cannot do."""
        needs = set()
        if request.depth is not None:
            needs.add("depth")
        if request.inpaint_mask is not None:
            needs.add("inpaint")
        elif request.init_images is not None and request.strength < 1.0:
            needs.add("img2img")
        missing = needs - set(self.capabilities)
        if missing:
            raise GeneratorKindError(
                f"{self.name} cannot do {', '.join(sorted(missing))} generation (it can do: "
                f"{', '.join(sorted(self.capabilities)) or 'nothing'}); load a model of the right kind, e.g. SD 1.5 "
                "with a depth ControlNet or SD 2 depth for depth, an inpainting model for inpainting."
            )
        h, w = request.size
        if h % self.latent_factor or w % self.latent_factor:
            raise GeneratorKindError(f"Image size {w}x{h} must be a multiple of {self.latent_factor} for {self.name}.")

    @abstractmethod
    def encode_prompt(self, request: GenerationRequest) -> Any:
        """Conditioning for the positive prompts and the negative prompt (classifier-free guidance)."""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> latents."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> (B, 3, H, W) float32 in [0, 1] on the CPU (the caller turns them into arrays)."""

    def modules(self) -> list[torch.nn.Module]:
        """The networks that see images (for tiling, which switches their convolutions to circular padding)."""
        return []

    def prepare(self, request: GenerationRequest) -> dict:
        """Per-request conditioning computed once before the loop (e.g. depth latents, masked-image latents)."""
        return {}

    def preview_rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, h, w) -> rough (B, 3, h, w) RGB in [0, 1] on the same device, without the decoder (live
        previews). The default fits SD-family 4-channel latents; generators with other latents override it."""
        factors = torch.tensor(SD_LATENT_RGB, device=latents.device, dtype=torch.float32)
        rgb = torch.einsum("bchw,cr->brhw", latents.float(), factors)
        return ((rgb + 1) / 2).clamp(0, 1)

    @abstractmethod
    def predict_noise(
        self, latents: torch.Tensor, t: torch.Tensor, prompt: Any, cond: dict, index: slice, guidance: float
    ) -> torch.Tensor:
        """Guided epsilon prediction for `latents`, the images `index` of the request."""


def guided_rows(table: torch.Tensor, index: slice, guided: bool) -> torch.Tensor:
    """Rows of a (2B, ...) negative-then-positive conditioning table for the images `index` of a request: negative
    then positive rows with classifier-free guidance, positive only without. Slices only, so no index tensor is
    built and uploaded at every step."""
    n = table.shape[0] // 2
    positive = table[n + index.start : n + index.stop]
    return torch.cat([table[index], positive]) if guided else positive
