#!/usr/bin/env python3
"""Train MeshDream's built-in upscaler (x2 and x4 heads) on procedural materials, on the CPU (no downloads).

    python scripts/train_upscale_model.py            # the shipped weights: 2 threads, see upscale_model.json

Writes OUT/upscale_model.safetensors (float16) and upscale_model.json (the model card: configuration, data,
degradations, command, seed, wall time, held-out PSNR); the default OUT is core/meshdream/weights.
High-res images are procedural materials (materials.py) made at twice the size, sometimes rotated and blended with
a second material along a soft noise boundary, half of them softened, then area-downsampled: anti-aliased edges
at any angle and of varied sharpness, as photos and painted textures have (all crisp, the net over-sharpens soft
photos). Low-res inputs: mostly a plain area downsampling (what texture pipelines and the
benchmark do), sometimes bicubic or Lanczos, a mild blur, slight noise or mild JPEG, always 8-bit.
The learning rate decays by a fixed half-life per step, not over a planned length, so a run stopped by
`--time-limit` equals a run of `--steps <steps done>` (the card's `reproduce`); with a fixed thread count the
CPU run is deterministic. Training textures are drawn from seed streams (TRAIN, seed, k) and held-out ones from
(HELD_OUT, k): the two never share a texture.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from meshdream.generators.builtin.materials import COLOURS, FAMILIES, fractal_noise, material  # noqa: E402
from meshdream.generators.builtin.upscaler import DEFAULT_CONFIG, UpscaleNet  # noqa: E402

TRAIN, HELD_OUT = 0, 1  # first word of every texture's seed: training and evaluation streams never meet
CROP = {2: 96, 4: 128}  # high-res training window per scale (48² and 32² low-res)
KERNELS = {"area": Image.BOX, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
SOFT_P, SOFT_SIGMA = 0.5, (0.5, 2.5)  # share of softened high-res textures, blur sigma at twice their size
DEGRADATIONS = {
    "kernel_p": {"area": 0.5, "bicubic": 0.25, "lanczos": 0.25},
    "blur_p": 0.1,
    "blur_sigma_hr": [0.2, 0.4],  # times the scale, on the high-res image before downsampling
    "noise_p": 0.15,
    "noise_sigma": [0.002, 0.01],
    "jpeg_p": 0.15,
    "jpeg_quality": [75, 95],
    "quantize": "8-bit",
}


def hr_texture(rng: np.random.Generator, size: int, family: str | None = None) -> np.ndarray:
    """(size, size, 3) float32: a material (or two, blended) made at 2 * size, maybe rotated, area-downsampled."""
    big = 2 * size

    def one() -> np.ndarray:
        img = material(family or rng.choice(FAMILIES), rng.choice(list(COLOURS)), big, rng)
        if rng.random() < 0.5:
            img = ndimage.rotate(img, rng.uniform(0, 90), axes=(0, 1), reshape=False, order=1, mode="wrap")
        return img

    img = one()
    if rng.random() < 0.4:
        edge = fractal_noise(rng, big, 3.0)
        mask = np.clip((edge - np.median(edge)) * rng.uniform(10, 200) + 0.5, 0, 1)[..., None]
        img = img * mask + one() * (1 - mask)
    gain, gamma = rng.uniform(0.7, 1.2, 3), rng.uniform(0.7, 1.4)
    img = np.clip(img * gain, 0, 1) ** gamma
    if rng.random() < SOFT_P:  # photos are rarely crisp to the texel: learn how sharp an edge is from the input
        img = ndimage.gaussian_filter(img, (*[rng.uniform(*SOFT_SIGMA)] * 2, 0), mode="wrap")
    return img.reshape(size, 2, size, 2, 3).mean((1, 3)).astype(np.float32)


def held_out_textures(n: int, size: int) -> list[np.ndarray]:
    """The evaluation textures: families in turn, from the HELD_OUT seed stream (never trained on)."""
    return [hr_texture(np.random.default_rng([HELD_OUT, k]), size, FAMILIES[k % len(FAMILIES)]) for k in range(n)]


def to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
    """A realistic 8-bit low-res version of `hr`, mostly mild (the PSNR-friendly mix in DEGRADATIONS)."""
    d = DEGRADATIONS
    if rng.random() < d["blur_p"]:
        hr = ndimage.gaussian_filter(hr, (*[rng.uniform(*d["blur_sigma_hr"]) * scale] * 2, 0), mode="wrap")
    kernel = rng.choice(list(d["kernel_p"]), p=list(d["kernel_p"].values()))
    h, w = hr.shape[:2]
    lr = np.asarray(Image.fromarray(to_u8(hr)).resize((w // scale, h // scale), KERNELS[kernel]))
    if rng.random() < d["noise_p"]:
        lr = to_u8(lr / 255.0 + rng.normal(0, rng.uniform(*d["noise_sigma"]), lr.shape))
    if rng.random() < d["jpeg_p"]:
        buf = io.BytesIO()
        Image.fromarray(lr).save(buf, "JPEG", quality=int(rng.integers(*d["jpeg_quality"], endpoint=True)))
        lr = np.asarray(Image.open(buf).convert("RGB"))
    return lr.astype(np.float32) / 255.0


def batch(pool: np.ndarray, n: int, scale: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random crops (flipped, turned) of the pool and their degraded versions, as (n, 3, h, w) tensors."""
    crop, size = CROP[scale], pool.shape[1]
    hrs, lrs = [], []
    for i, y, x, k, flip in zip(
        rng.integers(0, len(pool), n),
        rng.integers(0, size - crop + 1, n),
        rng.integers(0, size - crop + 1, n),
        rng.integers(0, 4, n),
        rng.random(n) < 0.5,
    ):
        hr = np.rot90(pool[i, y : y + crop, x : x + crop], k)
        hr = np.ascontiguousarray(hr[:, ::-1] if flip else hr)
        hrs.append(hr)
        lrs.append(degrade(hr, scale, rng))
    return tuple(torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous() for a in (hrs, lrs))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


@torch.no_grad()
def held_out_psnr(model: UpscaleNet, n: int = 24, size: int = 192) -> dict:
    """PSNR (dB, 4 texels shaved) of the model and of plain bicubic on area-downsampled held-out textures."""
    hr = torch.from_numpy(np.stack(held_out_textures(n, size))).permute(0, 3, 1, 2)
    out = {}
    for s in model.config["scales"]:
        lr = F.avg_pool2d(hr, s)
        bicubic = F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False)
        inner = (..., slice(4, -4), slice(4, -4))
        out[f"x{s}"] = {
            "model": round(psnr(model(lr, s)[inner], hr[inner]), 2),
            "bicubic": round(psnr(bicubic[inner], hr[inner]), 2),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds (0: never)")
    p.add_argument("--batch", type=int, default=16, help="crops per scale and step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--half-life", type=int, default=250, help="steps in which the learning rate halves")
    p.add_argument("--channels", type=int, default=DEFAULT_CONFIG["channels"])
    p.add_argument("--layers", type=int, default=DEFAULT_CONFIG["layers"])
    p.add_argument("--textures", type=int, default=600, help="high-res textures in the training pool")
    p.add_argument("--size", type=int, default=192, help="of the pool's textures")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed, so the run is reproducible)")
    p.add_argument("--out", type=Path, default=ROOT / "core" / "meshdream" / "weights", help="folder for the weights")
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    args.command = " ".join(["python scripts/train_upscale_model.py", *argv])
    dropped = {"--time-limit", "--out", "--steps"}
    kept = [a for k, a in enumerate(argv) if a not in dropped and (k == 0 or argv[k - 1] not in dropped)]
    args.reproduce = " ".join(["python scripts/train_upscale_model.py", *kept])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng([TRAIN, args.seed])
    t0 = time.time()

    pool = np.stack([hr_texture(np.random.default_rng([TRAIN, args.seed, k]), args.size) for k in range(args.textures)])
    t_data = time.time() - t0
    print(f"data: {len(pool)} textures of {args.size}² in {t_data:.0f} s", flush=True)

    config = {**DEFAULT_CONFIG, "channels": args.channels, "layers": args.layers}
    model = UpscaleNet(config)
    for head in model.heads.values():
        torch.nn.init.zeros_(head.weight)  # starts as plain bicubic
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses: list[float] = []
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 50) * 0.5 ** (step / args.half_life)
        loss = 0.0
        for s in config["scales"]:
            hr, lr = batch(pool, args.batch, s, rng)
            loss = loss + F.l1_loss(model(lr, s), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done = step + 1
        out_of_time = bool(args.time_limit) and time.time() - t0 > args.time_limit
        if step % 50 == 0 or done == args.steps or out_of_time:
            print(f"step {step} loss {np.mean(losses[-50:]):.5f} ({time.time() - t0:.0f} s)", flush=True)
        if done == args.steps or out_of_time:
            break
    model.eval()
    save(args, config, model, n_params, done, losses, t0, t_data)


def save(args, config: dict, model: UpscaleNet, n_params: int, steps_done: int, losses: list, t0, t_data) -> None:
    from safetensors.torch import save_file

    wall = time.time() - t0
    metrics = held_out_psnr(model)
    print(f"held-out PSNR: {metrics}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "upscale_model.safetensors"))
    card = {
        "model": "MeshDream built-in upscaler v1: bicubic + learned residual (bias-free conv net, PixelShuffle heads)",
        "config": config,
        "parameters": n_params,
        "weights_dtype": "float16",
        "data": {
            "textures": args.textures,
            "size": args.size,
            "crops_hr": CROP,
            "families": list(FAMILIES),
            "making": "material at 2x size, rotated at random for half, 40% blended with a second along a soft "
            f"noise edge, gain and gamma jitter, {SOFT_P:.0%} softened (gaussian sigma {SOFT_SIGMA} at 2x), 2x2 "
            "area downsampled; crops flipped and turned",
            "seed_streams": {"train": [TRAIN, args.seed, "k"], "held_out": [HELD_OUT, "k"]},
            "degradations": DEGRADATIONS,
        },
        "training": {
            "command": args.command,
            "reproduce": f"{args.reproduce} --steps {steps_done}",
            "steps": steps_done,
            "steps_asked": args.steps,
            "time_limit_s": args.time_limit,
            "batch_per_scale": args.batch,
            "seed": args.seed,
            "loss": "L1, x2 + x4",
            "optimizer": "Adam",
            "lr": args.lr,
            "lr_schedule": f"50-step warm-up, then halved every {args.half_life} steps",
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "wall_s": round(wall, 1),
            "data_s": round(t_data, 1),
            "final_loss_50": round(float(np.mean(losses[-50:])), 5),
        },
        "metrics": {"held_out_procedural_psnr_area": metrics},
    }
    (args.out / "upscale_model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.out / 'upscale_model.safetensors'} and upscale_model.json at step {steps_done}", flush=True)


if __name__ == "__main__":
    main()
