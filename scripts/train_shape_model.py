#!/usr/bin/env python3
"""Train the built-in point-cloud shape model; the default arguments reproduce the shipped weights.

    python scripts/train_shape_model.py            # CPU, 1 thread, writes core/meshdream/weights/shape_model.*

Data: procedural shapes of every category (meshdream.shapes.procedural), training seeds only, 2048 surface points
each; every step sees a random `--points` subset of each cloud (the denoiser is resolution-free, see model.py).
Objective: v-prediction on a diffusers DDPM schedule; the condition (category, then each prompt word) is
dropped at random so one network also serves as the unconditional model classifier-free guidance needs.
The saved weights are the exponential moving average of the trained ones.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from meshdream.shapes.model import DenoiserConfig, PointDenoiser
from meshdream.shapes.procedural import CATEGORIES, TAGS, build_set
from meshdream.shapes.sampler import SCHEDULE, WEIGHTS, ddpm_scheduler, save_shape_model

P_UNCOND = 0.1  # drop the whole condition (category and words)
P_TAG = 0.5  # keep each true prompt word with this probability, so a bare category is a valid condition
DATA_SCALE = 2.0  # normalized clouds (radius 1, std ~0.4) are scaled to std ~0.8 before noising
# Neighbourhood-feature kernel widths (model units; the 512 training points lie ~0.2 apart): they hand the
# network the local surface, which it would otherwise have to learn to find from the latents alone.
LOCAL_SCALES = (0.12, 0.24, 0.48)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--steps", type=int, default=3500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--points", type=int, default=512, help="points per cloud per training step")
    p.add_argument("--per-category", type=int, default=500, help="training shapes per category")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves a core for other work)")
    p.add_argument("--out", default=str(WEIGHTS), help=".safetensors path; the model card goes beside it (.json)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="also save the EMA weights every N steps "
        "(as OUT with .stepN before the suffix), to evaluate a run while it trains",
    )
    return p.parse_args(argv)


def lr_at(step: int, total: int, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 5%."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def model_card(args, argv, n_params: int, losses: list, t_data: float, wall: float, steps_done=None) -> dict:
    command = "python scripts/train_shape_model.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    return {
        "name": "meshdream-shape-pointdiffusion",
        "categories": list(CATEGORIES),
        "tags": list(TAGS),
        "data_scale": DATA_SCALE,
        "n_points_default": 2048,
        "steps_default": 25,
        "guidance_default": 1.5,
        "schedule": {
            "train": {"class": "DDPMScheduler", **SCHEDULE},
            "sample": "DPMSolverMultistepScheduler(algorithm_type='dpmsolver++', solver_order=2), fed noise "
            "predictions derived from v with clean points clipped to radius 1.05",
        },
        "data": (
            f"{args.per_category} procedural shapes per category (training seeds, indices 0..{args.per_category - 1}"
            " per category, see meshdream.shapes.procedural.shape_seed), 2048 surface points each, normalized "
            f"(bbox centre at origin, max radius 1), times {DATA_SCALE}; {args.points}-point random subsets per "
            "step; held-out shapes (evaluation) use seeds from procedural.HELDOUT_SEED0 on"
        ),
        "training": {
            "command": command,
            "steps": args.steps if steps_done is None else steps_done,
            "batch": args.batch,
            "points_per_cloud": args.points,
            "lr": args.lr,
            "seed": args.seed,
            "device": args.device,
            "torch_threads": args.threads,
            "p_uncond": P_UNCOND,
            "p_keep_tag": P_TAG,
            "ema_decay": 0.999,
            "parameters": n_params,
            "final_loss": round(float(np.mean(losses[-200:])), 5),
            "data_s": round(t_data, 1),
            "wall_s": round(wall, 1),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        },
    }


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.default_rng(args.seed)
    device = torch.device(args.device)
    t_start = time.perf_counter()

    data = build_set(args.per_category, "train")
    t_data = time.perf_counter() - t_start
    print(f"data: {len(data.points)} clouds of {data.points.shape[1]} points in {t_data:.0f} s", flush=True)
    points = torch.from_numpy(data.points).to(device) * DATA_SCALE
    labels = torch.from_numpy(data.labels).to(device)
    tags = torch.from_numpy(data.tags.astype(np.float32)).to(device)

    config = DenoiserConfig(
        n_categories=len(CATEGORIES), n_tags=len(TAGS), local_scales=LOCAL_SCALES, local_anchors=args.points
    )
    net = PointDenoiser(config).to(device)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, args.steps))
    noise_sched = ddpm_scheduler()
    alphas = noise_sched.alphas_cumprod.to(device)
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"model: {n_params / 1e6:.2f} M parameters; {args.steps} steps of {args.batch} x {args.points} points",
        flush=True,
    )

    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    losses, t_train = [], time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(0, len(points), (args.batch,), generator=gen)
        sub = torch.rand(args.batch, points.shape[1], generator=gen).argsort(dim=1)[:, : args.points].to(device)
        x0 = torch.gather(points[idx.to(device)], 1, sub[..., None].expand(-1, -1, 3))
        lab, tag = labels[idx.to(device)].clone(), tags[idx.to(device)].clone()
        drop = torch.rand(args.batch, generator=gen).to(device) < P_UNCOND
        lab[drop] = config.n_categories
        tag = tag * (torch.rand(tag.shape, generator=gen).to(device) < P_TAG) * (~drop[:, None])
        t = torch.randint(0, SCHEDULE["num_train_timesteps"], (args.batch,), generator=gen).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        a = alphas[t][:, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        loss = torch.nn.functional.mse_loss(net(xt, t, lab, tag), v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pn, 1 - decay)
        losses.append(loss.item())
        if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0 and step + 1 < args.steps:
            out = Path(args.out)
            card = model_card(args, argv, n_params, losses, t_data, time.perf_counter() - t_start, step + 1)
            save_shape_model(ema, card, out.with_name(f"{out.stem}.step{step + 1}{out.suffix}"))
        if (step + 1) % 100 == 0 or step == 0:
            el = time.perf_counter() - t_train
            print(
                f"step {step + 1}/{args.steps} loss {np.mean(losses[-100:]):.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"{el / (step + 1):.2f} s/step, eta {el / (step + 1) * (args.steps - step - 1) / 60:.1f} min",
                flush=True,
            )

    wall = time.perf_counter() - t_start
    card = model_card(args, argv, n_params, losses, t_data, wall)
    save_shape_model(ema, card, Path(args.out))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 2**20:.1f} MB) in {wall / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
