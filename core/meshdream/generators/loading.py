"""`load_generator(spec)`: turn a model spec into a Generator, offline.

A spec is "builtin", a Hugging Face repo id (taken from the local cache only: HF_HOME / HF_HUB_CACHE are
respected and nothing is downloaded), a local diffusers folder, or a single .safetensors file (a full original-
format checkpoint, or diffusers-format UNet weights that replace a base model's). The model family is read from
the files: UNet input channels 4 (+ a depth ControlNet), 5 (SD 2 depth) or 9 (inpainting); a second text
encoder means SDXL.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..errors import InvalidParameterError
from ..tensors import pick_device
from .base import Generator, GeneratorKindError, ModelNotFoundError
from .schedulers import (
    EMBEDDED_GUIDANCE,
    SAMPLERS,
    FewStep,
    check_sampler,
    detect_sampler,
    make_scheduler,
    model_names,
    named_sampler,
)

MEMORY_PRESETS = ("auto", "none", "low", "minimal")


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_repo(repo_id: str) -> Path:
    """The local snapshot folder of a cached Hugging Face repo, never downloading."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError, offline errors
        raise ModelNotFoundError(
            f"Model '{repo_id}' is not in the local Hugging Face cache ({_hf_cache_dir()}). MeshDream never downloads "
            f"at run time: on a machine with internet run `huggingface-cli download {repo_id}` (set HF_HOME to "
            "choose the cache), or pass a local diffusers folder or .safetensors file."
        ) from exc


def _is_repo_id(spec: str) -> bool:
    return spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not Path(spec).exists()


def resolve_folder(spec: str | os.PathLike) -> Path:
    spec = os.fspath(spec)
    if _is_repo_id(spec):
        return resolve_repo(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"No model at '{path}'; give a diffusers folder, a .safetensors file or a cached repo id."
        )
    return path


def list_cached_models() -> list[dict]:
    """Diffusers models in the local Hugging Face cache: repo id, kind and size on disk."""
    out = []
    root = _hf_cache_dir()
    if not root.exists():
        return out
    for repo in sorted(root.glob("models--*")):
        snaps = sorted((repo / "snapshots").glob("*"))
        if not snaps:
            continue
        snap = snaps[-1]
        kind = _describe(snap)
        if kind is None:
            continue
        size = sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
        out.append({"id": repo.name[len("models--") :].replace("--", "/"), "kind": kind, "bytes": size})
    return out


def _describe(folder: Path) -> Optional[str]:
    if (folder / "model_index.json").exists():
        index = json.loads((folder / "model_index.json").read_text())
        unet = folder / "unet" / "config.json"
        channels = json.loads(unet.read_text()).get("in_channels", 4) if unet.exists() else None
        family = {4: "text-to-image", 5: "depth (SD 2 depth)", 9: "inpainting"}.get(channels, index.get("_class_name"))
        xl = " (SDXL)" if "text_encoder_2" in index else ""
        ctrl = " + ControlNet" if "controlnet" in index else ""
        return f"{family}{xl}{ctrl}"
    if (folder / "config.json").exists():
        cls = json.loads((folder / "config.json").read_text()).get("_class_name", "")
        return "ControlNet" if "ControlNet" in cls else None
    return None


def _load_components(folder: Path, dtype: torch.dtype, unet_file: Optional[Path] = None):
    import diffusers
    import transformers

    from .diffusers_generator import Components

    index = json.loads((folder / "model_index.json").read_text())

    def load(name, cls):
        return cls.from_pretrained(folder, subfolder=name, torch_dtype=dtype) if name in index else None

    if unet_file is not None:
        unet = diffusers.UNet2DConditionModel.from_single_file(
            str(unet_file), config=str(folder), subfolder="unet", torch_dtype=dtype, local_files_only=True
        )
    else:
        unet = load("unet", diffusers.UNet2DConditionModel)
    scheduler_cls = getattr(diffusers, index["scheduler"][1])
    return Components(
        unet=unet,
        vae=load("vae", diffusers.AutoencoderKL),
        text_encoder=load("text_encoder", transformers.CLIPTextModel),
        tokenizer=transformers.CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        scheduler=scheduler_cls.from_pretrained(folder, subfolder="scheduler"),
        text_encoder_2=load("text_encoder_2", transformers.CLIPTextModelWithProjection),
        tokenizer_2=(
            transformers.CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2")
            if "tokenizer_2" in index
            else None
        ),
        controlnet=load("controlnet", diffusers.ControlNetModel),
    )


def _single_file(path: Path, base: Optional[str], dtype: torch.dtype):
    """Components from one .safetensors file: diffusers-format UNet weights over `base`, or an original checkpoint."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    if any(k.startswith("conv_in.") for k in keys):  # diffusers-format UNet weights
        if base is None:
            raise InvalidParameterError(
                f"'{path.name}' holds UNet weights only; pass base=<the model it was fine-tuned from> (folder or id)."
            )
        return _load_components(resolve_folder(base), dtype, unet_file=path)
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise GeneratorKindError(f"'{path.name}' is not a Stable Diffusion checkpoint (no UNet weights found).")
    import diffusers

    from .diffusers_generator import Components

    xl = any(k.startswith("conditioner.embedders.1.") for k in keys)
    cls = diffusers.StableDiffusionXLPipeline if xl else diffusers.StableDiffusionPipeline
    kwargs = {"config": str(resolve_folder(base))} if base else {}
    try:
        pipe = cls.from_single_file(str(path), torch_dtype=dtype, local_files_only=True, **kwargs)
    except Exception as exc:
        raise ModelNotFoundError(
            f"Could not load '{path.name}' offline ({exc}). Pass base=<a cached or local copy of the model family it "
            "belongs to>, e.g. base='stable-diffusion-v1-5/stable-diffusion-v1-5', so its configs can be read."
        ) from exc
    return Components(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=pipe.scheduler,
        text_encoder_2=getattr(pipe, "text_encoder_2", None),
        tokenizer_2=getattr(pipe, "tokenizer_2", None),
    )


def load_generator(
    spec: str | os.PathLike = "builtin",
    *,
    controlnet: Optional[str | os.PathLike] = None,
    base: Optional[str] = None,
    lora: Optional[str | os.PathLike | Sequence[str | os.PathLike]] = None,
    lora_scale: float = 1.0,
    ip_adapter: Optional[str | os.PathLike] = None,
    image_encoder: Optional[str | os.PathLike] = None,
    device: str | torch.device = "auto",
    dtype: Optional[torch.dtype] = None,
    memory: str = "auto",
    scheduler: Any = None,
    sampler: Optional[str] = None,
) -> Generator:
    """Load a texture generator. See the module doc for `spec`.

    controlnet: a depth ControlNet (folder or cached id) for a plain text-to-image model.
    base: for single-file checkpoints, the model whose configs (or non-UNet parts) to use.
    lora: LoRA weight file(s) or folder(s) applied to the UNet at `lora_scale`.
    ip_adapter: an IP-Adapter .safetensors (e.g. ip-adapter_sd15.safetensors) so a reference picture can steer
        the style (texture_mesh(reference_image=...)); image_encoder: its CLIP vision model folder (default: the
        "image_encoder" folder next to the file or one level up, as in the h94/IP-Adapter layout).
    memory: "none" (fastest: 16 images per call), "low" (4 images per denoiser call, one per VAE call, VAE tiling;
        for ~8 GB cards), "minimal" (two images per denoiser call, one per VAE call, text / image encoders on
        the GPU only while used: for ~4 GB cards);
        "auto" picks by the GPU memory free at load time.
    scheduler: a name in schedulers.SCHEDULERS or a diffusers scheduler instance; None: the model's own (the built-in
        model's card says which, DPM-Solver++ for diffusers models).
    sampler: a few-step sampler ("lcm", "tcd" or "trailing"; see schedulers.SAMPLERS) in place of `scheduler`, with
        the steps and guidance it was made for as the generator's defaults. None: recognized from the model and
        LoRAs (an LCM scheduler config or guidance-embedding UNet; LCM / TCD / Hyper-SD / Lightning in a name or
        title), else `scheduler` with the usual defaults.
    """
    check_sampler(sampler)
    if memory not in MEMORY_PRESETS:
        raise InvalidParameterError(f"memory={memory!r} is unknown; use one of {', '.join(MEMORY_PRESETS)}.")
    spec_str = os.fspath(spec)
    if spec_str == "builtin":
        if sampler is not None:
            raise InvalidParameterError("Few-step samplers are for diffusers models; the built-in model has its own.")
        from .builtin import load_builtin

        return load_builtin(device=device, scheduler=scheduler, dtype=dtype)
    dev = pick_device(device)
    dtype = dtype or (torch.float16 if dev.type == "cuda" else torch.float32)

    path = Path(spec_str).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        parts = _single_file(path, base, dtype)
    else:
        folder = resolve_folder(spec_str)
        if not (folder / "model_index.json").exists():
            raise GeneratorKindError(
                f"'{spec_str}' is not a diffusers pipeline folder (no model_index.json); a ControlNet goes in "
                "controlnet=..., next to a Stable Diffusion model."
            )
        parts = _load_components(folder, dtype)
    if controlnet is not None:
        import diffusers

        parts.controlnet = diffusers.ControlNetModel.from_pretrained(resolve_folder(controlnet), torch_dtype=dtype)

    channels = parts.unet.config.in_channels
    family = {5: "depth_unet", 9: "inpaint"}.get(channels, "controlnet")
    if family == "controlnet" and parts.controlnet is None:
        raise GeneratorKindError(
            f"'{spec_str}' is a plain text-to-image model: texturing needs depth conditioning. Add a depth ControlNet "
            "(controlnet='lllyasviel/control_v11f1p_sd15_depth' for SD 1.5, "
            "'diffusers/controlnet-depth-sdxl-1.0' for SDXL), or use an SD 2 depth or inpainting model."
        )
    loras = [] if lora is None else [lora] if isinstance(lora, (str, os.PathLike)) else list(lora)
    lora_files = [_lora_file(Path(os.fspath(item)).expanduser()) for item in loras]
    for k, file in enumerate(lora_files):
        _apply_lora(parts.unet, file, f"lora{k}", lora_scale)
    fewstep = _few_step(sampler, lora_files, parts, path)

    if ip_adapter is not None:
        _apply_ip_adapter(parts, Path(os.fspath(ip_adapter)).expanduser(), image_encoder, dtype)

    prediction = parts.scheduler.config.get("prediction_type", "epsilon")
    if fewstep is None:
        parts.scheduler = make_scheduler(scheduler or "dpm++", parts.scheduler.config)
    else:
        parts.scheduler = SAMPLERS[fewstep.sampler].scheduler(parts.scheduler.config)
    for module in (
        parts.unet,
        parts.vae,
        parts.text_encoder,
        parts.text_encoder_2,
        parts.controlnet,
        parts.image_encoder,
    ):
        if module is not None:
            module.to(dev).eval()
    preset = _apply_memory_preset(parts, dev, memory)
    from .diffusers_generator import DiffusersGenerator

    gen = DiffusersGenerator(
        parts, family, name=Path(spec_str).name or spec_str, device=dev, dtype=dtype, prediction_type=prediction
    )
    gen.memory = preset
    if fewstep is not None:
        gen.sampler, gen.default_steps = fewstep.sampler, fewstep.steps
        if gen.guidance_embedded:
            gen.default_guidance = EMBEDDED_GUIDANCE
        elif fewstep.guidance is not None:
            gen.default_guidance = fewstep.guidance
    gen.max_batch, gen.vae_batch = PRESET_BATCHES[preset]
    if preset == "minimal" and dev.type == "cuda":
        # A CUDA graph keeps its activations' memory for the whole sampling call (measured: minimal's peak went
        # from 3.7 GB to past its 4 GB cap): here memory comes before launch overhead.
        gen.cuda_graphs = False
        gen.offload = tuple(m for m in (parts.text_encoder, parts.text_encoder_2, parts.image_encoder) if m is not None)
        for module in gen.offload:
            module.to("cpu")
    return gen


def _few_step(sampler: Optional[str], lora_files: list[Path], parts, spec: Path) -> Optional[FewStep]:
    """The few-step sampler to run: the one asked for, else the one a LoRA's or the model's name says, else LCM
    for a model configured as an LCM (its scheduler config, or a UNet that takes the guidance as an embedding)."""
    names = [model_names(f) for f in lora_files]
    if sampler is not None:
        return named_sampler(sampler, " ".join(names))
    lcm_model = type(parts.scheduler).__name__ == "LCMScheduler" or parts.unet.config.time_cond_proj_dim is not None
    return detect_sampler(names) or (named_sampler("lcm") if lcm_model else detect_sampler([model_names(spec)]))


def _lora_file(path: Path) -> Path:
    """The .safetensors file of a LoRA given as a file or a folder holding one."""
    if not path.exists():
        raise ModelNotFoundError(f"No LoRA at '{path}'; give a .safetensors file or a folder holding one.")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ModelNotFoundError(f"No .safetensors LoRA file in '{path}'.")
        return files[0]
    return path


def _apply_lora(unet, path: Path, name: str, scale: float) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    # Files saved by diffusers prefix UNet keys with "unet."; kohya-style files are converted by diffusers too.
    prefix = "unet" if any(k.startswith("unet.") for k in state) else None
    unet.load_lora_adapter(state, prefix=prefix, adapter_name=name)
    names = list(getattr(unet, "peft_config", {}).keys())
    unet.set_adapters(names, [scale] * len(names))


def _apply_ip_adapter(parts, path: Path, image_encoder, dtype: torch.dtype) -> None:
    if not path.is_file():
        raise ModelNotFoundError(f"No IP-Adapter file at '{path}'; give its .safetensors file.")
    from safetensors.torch import load_file
    from transformers import CLIPVisionModelWithProjection

    flat = load_file(str(path))
    state = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if head not in state:
            raise GeneratorKindError(f"'{path.name}' is not an IP-Adapter file (unexpected key '{key}').")
        state[head][rest] = value
    candidates = (
        [Path(os.fspath(image_encoder)).expanduser()]
        if image_encoder
        else [path.parent / "image_encoder", path.parent.parent / "image_encoder"]
    )
    folder = next((c for c in candidates if (c / "config.json").exists()), None)
    if folder is None:
        raise ModelNotFoundError(
            f"No CLIP image encoder for '{path.name}' in {', '.join(map(str, candidates))}; "
            "pass image_encoder=<folder>."
        )
    parts.unet._load_ip_adapter_weights([state])
    parts.image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder, torch_dtype=dtype).eval()


# Images per denoiser call and per VAE call for each preset. The denoiser's activations grow with the batch and the
# VAE's with full-size images, so small cards take them a few (or one) at a time; "minimal" also keeps the text and
# image encoders (used once per job) on the CPU. Measured on an H200 with SD 1.5 + ControlNet, fp16, 8 views at
# 512 px: "none" peaks at 6.8 GB, "low" at 3.4 GB (1.46x the time).
PRESET_BATCHES = {"none": (16, 16), "low": (4, 1), "minimal": (2, 1)}


def pick_memory_preset(dev: torch.device) -> str:
    """ "auto": by the GPU memory free now (CPU and MPS run "none")."""
    if dev.type != "cuda":
        return "none"
    free, _ = torch.cuda.mem_get_info(dev)
    return "none" if free >= 12 * 2**30 else "low" if free >= 6 * 2**30 else "minimal"


def _apply_memory_preset(parts, dev: torch.device, memory: str) -> str:
    """Configure the modules for `memory`; returns the preset in force ("auto" resolved)."""
    if memory == "auto":
        memory = pick_memory_preset(dev)
    if memory in ("low", "minimal"):
        parts.vae.enable_tiling()  # images above the VAE's tile size decode tile by tile
    return memory
