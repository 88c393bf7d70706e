"""Tiny random-weight diffusers pipelines, built and saved locally so loading is tested exactly as a user's model
loads, without downloads. Shapes follow the real families (VAE factor 8, 4 latent channels, CLIP text encoders);
widths are tiny so a denoising step takes milliseconds on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = [
    "a",
    "red",
    "green",
    "blue",
    "brick",
    "wood",
    "marble",
    "wall",
    "cow",
    "front",
    "side",
    "back",
    "top",
    "bottom",
    "view",
    "shadow",
    "highlight",
    "oak",
    "metal",
    "stone",
]


def write_tokenizer(folder: Path) -> None:
    """A byte-level BPE vocabulary small enough to write by hand: the 256 byte symbols (plain and word-final) and
    a few whole words, so prompts tokenize to words rather than letters."""
    folder.mkdir(parents=True, exist_ok=True)
    # GPT-2/CLIP byte-to-symbol table: printable bytes map to themselves, the rest to code points from 256 up.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    table = dict(zip(printable, printable)) | {b: 256 + k for k, b in enumerate(extra)}
    symbols = [chr(table[b]) for b in range(256)]
    vocab = {s: i for i, s in enumerate(symbols)}
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = []
    for w in WORDS:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            a, b = parts[0], parts[1]
            merges.append(f"{a} {b}")
            parts = [a + b] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")


def tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_tokenizer(folder)
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77)


def text_encoder(vocab: int, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )


def unet(in_channels: int = 4, xl: bool = False, **extra):
    from diffusers import UNet2DConditionModel

    kw = dict(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=4,
    )
    if xl:
        kw.update(
            cross_attention_dim=64,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
        )
    else:
        kw.update(cross_attention_dim=32)
    return UNet2DConditionModel(**{**kw, **extra})


def scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build(folder: Path, kind: str, seed: int = 0) -> Path:
    """Save a tiny pipeline of `kind` (sd15_controlnet, sdxl_controlnet, sd2_depth, sd_inpaint, sd15_plain, or
    sd15_lcm: an LCM checkpoint + depth ControlNet, its UNet taking the guidance as an embedding)."""
    import diffusers

    torch.manual_seed(seed)
    folder = Path(folder)
    tok = tokenizer(folder / "_tok")
    vocab = len(tok)
    common = dict(vae=vae(), text_encoder=text_encoder(vocab), tokenizer=tok, scheduler=scheduler())
    if kind == "sd15_controlnet":
        u = unet()
        pipe = diffusers.StableDiffusionControlNetPipeline(
            unet=u,
            controlnet=diffusers.ControlNetModel.from_unet(u),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **common,
        )
    elif kind == "sd15_lcm":
        common["scheduler"] = diffusers.LCMScheduler.from_config(common["scheduler"].config)
        pipe = diffusers.StableDiffusionControlNetPipeline(
            unet=unet(time_cond_proj_dim=32),
            controlnet=diffusers.ControlNetModel.from_unet(unet()),  # the base model's, as for LCM_Dreamshaper
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **common,
        )
    elif kind == "sdxl_controlnet":
        u = unet(xl=True)
        pipe = diffusers.StableDiffusionXLControlNetPipeline(
            unet=u,
            controlnet=diffusers.ControlNetModel.from_unet(u),
            text_encoder_2=text_encoder(vocab, True),
            tokenizer_2=tok,
            **common,
        )
    elif kind == "sd2_depth":
        pipe = diffusers.StableDiffusionDepth2ImgPipeline(
            unet=unet(5), depth_estimator=None, feature_extractor=None, **common
        )
    elif kind == "sd_inpaint":
        pipe = diffusers.StableDiffusionInpaintPipeline(
            unet=unet(9), safety_checker=None, feature_extractor=None, requires_safety_checker=False, **common
        )
    elif kind == "sd15_plain":
        pipe = diffusers.StableDiffusionPipeline(
            unet=unet(), safety_checker=None, feature_extractor=None, requires_safety_checker=False, **common
        )
    else:
        raise ValueError(kind)
    pipe.save_pretrained(folder)
    return folder


def build_lora(path: Path, pipeline_folder: Path, seed: int = 0, title: str | None = None) -> Path:
    """A random LoRA for a tiny pipeline's UNet, saved as `path` in the diffusers layout ("unet."-prefixed PEFT keys),
    with `title` as its safetensors metadata "modelspec.title" if given."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    torch.manual_seed(seed)
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    state = {f"unet.{k}": v.contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"modelspec.title": title} if title else None)
    return path


def build_upscaler(folder: Path, seed: int = 0) -> Path:
    """A tiny StableDiffusionUpscalePipeline laid out like stabilityai/stable-diffusion-x4-upscaler: VAE factor 4,
    UNet input = 4 latent + 3 low-resolution image channels, noise level as class label."""
    import diffusers

    torch.manual_seed(seed)
    folder = Path(folder)
    tok = tokenizer(folder / "_tok")
    vae4 = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
        scaling_factor=0.08333,
    )
    u = unet(in_channels=7, num_class_embeds=351)  # noise level classes, as the x4 upscaler's UNet
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=vae4,
        text_encoder=text_encoder(len(tok)),
        tokenizer=tok,
        unet=u,
        low_res_scheduler=diffusers.DDPMScheduler(),
        scheduler=scheduler(),
    )
    pipe.save_pretrained(folder)
    return folder


def build_ip_adapter(folder: Path, pipeline_folder: Path, seed: int = 0) -> Path:
    """A random IP-Adapter for the tiny SD 1.5 UNet: image_encoder/ (CLIP vision) + ip-adapter.safetensors, laid
    out like h94/IP-Adapter (flat keys "image_proj.*" and "ip_adapter.{k}.to_k_ip.weight", k = 1, 3, 5, ...)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    folder = Path(folder)
    unet = UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    cross = unet.config.cross_attention_dim
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            projection_dim=32,
        )
    )
    encoder.save_pretrained(folder / "image_encoder")
    state = {
        "image_proj.proj.weight": torch.randn(4 * cross, 32) * 0.2,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            block = name.split(".")[0]
            if block == "mid_block":
                hidden = unet.config.block_out_channels[-1]
            elif block == "up_blocks":
                hidden = list(reversed(unet.config.block_out_channels))[int(name.split(".")[1])]
            else:
                hidden = unet.config.block_out_channels[int(name.split(".")[1])]
            state[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
            state[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
            key += 2
    path = folder / "ip-adapter.safetensors"
    save_file(state, str(path))
    return path


MARIGOLD_APPEARANCE = {  # laid out like prs-eth/marigold-iid-appearance-v1-1's model_index.json
    "target_names": ["albedo", "material"],
    "albedo": {"prediction_space": "srgb"},
    "material": {"prediction_space": "stack", "sub_target_names": ["roughness", "metallicity", None]},
    "roughness": {"prediction_space": "linear"},
    "metallicity": {"prediction_space": "linear"},
}


def build_marigold(folder: Path, kind: str, seed: int = 0) -> Path:
    """A tiny random MarigoldIntrinsicsPipeline (kind "intrinsics", two targets as the appearance model) or
    MarigoldNormalsPipeline ("normals"): the UNet sees the image latent and every target's latent (4 channels
    each) and predicts the targets'; one denoising step at a 32-pixel processing resolution by default."""
    import diffusers

    torch.manual_seed(seed)
    folder = Path(folder)
    tok = tokenizer(folder / "_tok")
    targets = len(MARIGOLD_APPEARANCE["target_names"]) if kind == "intrinsics" else 1
    u = unet(in_channels=4 + 4 * targets, out_channels=4 * targets)
    common = dict(
        unet=u,
        vae=vae(),
        scheduler=scheduler(),
        text_encoder=text_encoder(len(tok)),
        tokenizer=tok,
        default_denoising_steps=1,
        default_processing_resolution=32,
    )
    if kind == "intrinsics":
        pipe = diffusers.MarigoldIntrinsicsPipeline(
            prediction_type="intrinsics", target_properties=MARIGOLD_APPEARANCE, **common
        )
    elif kind == "normals":
        pipe = diffusers.MarigoldNormalsPipeline(prediction_type="normals", use_full_z_range=True, **common)
    else:
        raise ValueError(kind)
    pipe.save_pretrained(folder)
    return folder


def build_shap_e(folder: Path, kind: str = "text", seed: int = 0) -> Path:
    """A tiny ShapEPipeline (kind "text") or ShapEImg2ImgPipeline ("image"), laid out like openai/shap-e(-img2img):
    a prior over 32 latent tokens of width 16 that the renderer's params_proj turns into an 8-wide NeRSTF MLP."""
    import diffusers
    from diffusers.pipelines.shap_e import ShapERenderer

    torch.manual_seed(seed)
    folder = Path(folder)
    width, hidden = 16, 8  # latent token width; the decoded MLP's width (4 layers x `hidden` rows = 32 tokens)
    prior = diffusers.PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        embedding_dim=width,
        num_embeddings=4 * hidden,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        embedding_proj_norm_type="layer" if kind == "image" else None,
        encoder_hid_proj_type=None,
        added_emb_type=None,
        embedding_proj_dim=32,
        clip_embed_dim=2 * width,
    )
    renderer = ShapERenderer(
        param_names=tuple(f"nerstf.mlp.{i}.weight" for i in range(4)),
        param_shapes=((hidden, 93), (hidden, hidden), (hidden, hidden), (hidden, hidden)),
        d_latent=width,
        d_hidden=hidden,
        n_output=12,
        background=(0.1, 0.1, 0.1),
    )
    scheduler = diffusers.HeunDiscreteScheduler(
        beta_schedule="exp",
        num_train_timesteps=1024,
        prediction_type="sample",
        use_karras_sigmas=True,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    if kind == "text":
        tok = tokenizer(folder / "_tok")
        pipe = diffusers.ShapEPipeline(
            prior=prior,
            text_encoder=text_encoder(len(tok), projection=True),
            tokenizer=tok,
            scheduler=scheduler,
            shap_e_renderer=renderer,
        )
    elif kind == "image":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        encoder = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=32,
                image_size=32,
                patch_size=16,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                num_channels=3,
            )
        )
        processor = CLIPImageProcessor(size=32, crop_size=32, resample=3)
        pipe = diffusers.ShapEImg2ImgPipeline(
            prior=prior, image_encoder=encoder, image_processor=processor, scheduler=scheduler, shap_e_renderer=renderer
        )
    else:
        raise ValueError(kind)
    pipe.save_pretrained(folder)
    return folder
