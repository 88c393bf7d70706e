#!/usr/bin/env python3
"""Train the built-in shape model; the default arguments reproduce the shipped weights (2 CPU cores, < 60 min).

    python scripts/train_shape_model.py            # writes core/meshdream/weights/shape_model.{safetensors,json}

Data: procedural shapes of every category (meshdream.shapes.procedural), training seeds only, 2048 surface points.
Stage 1, autoencoder: the encoder reads a random 512-point subset of a cloud, the decoder must give back all 2048
points (Chamfer loss for the surface, plus sliced Wasserstein for an even density; the code is jittered with a
little noise so that nearby codes decode to nearby shapes, which is what the diffusion model's imperfect codes need).
Stage 2, code diffusion: every training cloud is encoded a few times (different subsets: free augmentation), the
codes standardized, and a denoiser learns them by v-prediction on a diffusers DDPM schedule; the condition
(category, then each prompt word) is dropped at random so one network also serves as the unconditional model
classifier-free guidance needs. Both stages keep an exponential moving average of the weights; that is saved.
`--autoencoder PATH` skips stage 1 and reuses a saved model's autoencoder (to retrain the diffusion part only).
`--device cuda` trains on a GPU: data, networks and losses live there; every random draw is still made on the CPU
(one seeded generator) and moved, so a seed draws the same batches on every device.
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
from meshdream.shapes.model import CodeDenoiser, ShapeModelConfig, ShapeNets
from meshdream.shapes.procedural import CATEGORIES, TAGS, build_set
from meshdream.shapes.sampler import SCHEDULE, WEIGHTS, ddpm_scheduler, load_shape_model, save_shape_model
from scipy.spatial import cKDTree

P_UNCOND = 0.1  # drop the whole condition (category and words)
P_TAG = 0.5  # keep each true prompt word with this probability, so a bare category is a valid condition
ENCODER_POINTS = 512  # the encoder sees this many points of a cloud (any subset describes the shape)
CODE_NOISE = 0.1  # std of the jitter added to codes (unit spread) before decoding, in training
ENCODINGS = 4  # codes per training cloud for stage 2 (one per random subset)
# Sampling defaults stored in the card. Guidance 1 (none) scored best: 1-NNA-CD 62.2% vs 64.8% at 1.5
# (eval_shapes.py --n 16 --no-baselines --emd-points 0).
STEPS, GUIDANCE = 25, 1.0


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ae-steps", type=int, default=6000)
    p.add_argument("--ae-batch", type=int, default=32)
    p.add_argument("--ae-lr", type=float, default=5e-4)
    p.add_argument("--sliced-weight", type=float, default=1.0, help="weight of the sliced Wasserstein loss term")
    p.add_argument("--steps", type=int, default=12000, help="code-diffusion steps")
    p.add_argument("--batch", type=int, default=256, help="code-diffusion batch")
    p.add_argument("--lr", type=float, default=1e-3, help="code-diffusion learning rate")
    p.add_argument("--per-category", type=int, default=500, help="training shapes per category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--autoencoder", help="reuse this saved model's autoencoder (skip stage 1)")
    p.add_argument("--ae-init", help="stage 1 continues from this saved model's autoencoder (a fine-tune)")
    p.add_argument("--code-noise", type=float, default=CODE_NOISE, help="std of the code jitter in stage 1")
    p.add_argument("--code", type=int, default=ShapeModelConfig.code, help="shape code size (a new autoencoder)")
    p.add_argument("--out", default=str(WEIGHTS), help=".safetensors path; the model card goes beside it (.json)")
    return p.parse_args(argv)


def lr_at(step: int, total: int, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 5%."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def chamfer_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over clouds of the Chamfer distance (squared, both ways) between pred (B, N, 3) and target (B, M, 3),
    both on one device. Nearest neighbours come from k-d trees on CPU copies (a dense distance matrix with its
    backward pass took 1.3 s for 32 x 2048 x 1024 points here, four times a whole training step); the matches go
    back to the device and the gradient flows through the matched pairs, which is all the loss depends on almost
    everywhere."""
    p, y = pred.detach().cpu().numpy(), target.cpu().numpy()
    to_target = np.stack([cKDTree(b).query(a)[1] for a, b in zip(p, y)])
    to_pred = np.stack([cKDTree(a).query(b)[1] for a, b in zip(p, y)])
    near_t = torch.gather(target, 1, match_index(to_target, pred.device))
    near_p = torch.gather(pred, 1, match_index(to_pred, pred.device))
    return (pred - near_t).square().sum(-1).mean() + (target - near_p).square().sum(-1).mean()


def match_index(matches: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, N) point indices from scipy -> a (B, N, 3) gather index on `device`."""
    return torch.from_numpy(matches).to(device)[..., None].expand(-1, -1, 3)


def sliced_wasserstein(pred: torch.Tensor, target: torch.Tensor, gen: torch.Generator, directions: int = 8):
    """Mean squared distance between the sorted projections of the two clouds (equal sizes) on a few random
    directions, new ones every step (sorting is the costly part): the sliced Wasserstein-2 distance. Chamfer
    alone does not care how densely a surface is covered, and the decoder then bunches points; this term asks
    for the data's density as well."""
    dirs = torch.nn.functional.normalize(draw(gen, pred.device, torch.randn, 3, directions), dim=0)
    p = (pred @ dirs).sort(dim=1).values
    t = (target @ dirs).sort(dim=1).values
    return (p - t).square().mean() * 3  # x3: one direction sees a third of the squared 3D distance


def optimizer_step(loss, opt, sched, net: torch.nn.Module, ema: torch.nn.Module, step: int, clip=None) -> None:
    """Backward, optional gradient clipping, update, learning-rate schedule, then the moving average (decay
    0.999, shorter while there are few steps to average)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()
    sched.step()
    d = min(0.999, (1 + step) / (10 + step))
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - d)


def draw(gen: torch.Generator, device: torch.device, fn, *args) -> torch.Tensor:
    """fn(*args) (torch.rand, randn, randint) from the CPU generator `gen`, moved to `device`: the one way random
    draws reach the training, so a seed gives the same draws on every device."""
    return fn(*args, generator=gen).to(device)


def random_subsets(points: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    sub = draw(gen, points.device, torch.rand, points.shape[:2]).argsort(dim=1)[:, :n]
    return torch.gather(points, 1, sub[..., None].expand(-1, -1, 3))


def progress(stage: str, step: int, total: int, losses: list, t0: float, lr: float) -> None:
    every = max(1, min(200, total // 10))
    if (step + 1) % every == 0 or step == 0:
        el = time.perf_counter() - t0
        print(
            f"{stage} {step + 1}/{total} loss {np.mean(losses[-every:]):.5f} lr {lr:.2e} {el / (step + 1):.3f} s/step,"
            f" eta {el / (step + 1) * (total - step - 1) / 60:.1f} min",
            flush=True,
        )


def train_autoencoder(nets: ShapeNets, points: torch.Tensor, args, gen: torch.Generator) -> list:
    ae = torch.nn.ModuleList([nets.encoder, nets.decoder])
    ema = copy.deepcopy(ae).requires_grad_(False)
    opt = torch.optim.Adam(ae.parameters(), lr=args.ae_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, args.ae_steps))
    losses, t0 = [], time.perf_counter()
    for step in range(args.ae_steps):
        target = points[draw(gen, points.device, torch.randint, 0, len(points), (args.ae_batch,))]
        z = nets.encoder(random_subsets(target, ENCODER_POINTS, gen))
        z = z + args.code_noise * draw(gen, z.device, torch.randn, z.shape)
        pred = nets.decoder(z)
        loss = chamfer_loss(pred, target)
        if args.sliced_weight:
            loss = loss + args.sliced_weight * sliced_wasserstein(pred, target, gen)
        optimizer_step(loss, opt, sched, ae, ema, step)
        losses.append(loss.item())
        progress("autoencoder", step, args.ae_steps, losses, t0, sched.get_last_lr()[0])
    ae.load_state_dict(ema.state_dict())
    return losses


@torch.no_grad()
def encode_all(nets: ShapeNets, points: torch.Tensor, gen: torch.Generator, batch: int = 256) -> torch.Tensor:
    """ENCODINGS codes per cloud, (ENCODINGS * S, code), in order: all clouds once, then again..."""
    return torch.cat(
        [
            nets.encoder(random_subsets(points[i : i + batch], ENCODER_POINTS, gen))
            for _ in range(ENCODINGS)
            for i in range(0, len(points), batch)
        ]
    )


def train_denoiser(nets: ShapeNets, codes, labels, tags, args, gen: torch.Generator) -> list:
    net, n_cat = nets.denoiser, nets.config.n_categories
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, args.steps))
    dev = codes.device
    alphas = ddpm_scheduler().alphas_cumprod.to(dev)
    losses, t0 = [], time.perf_counter()
    for step in range(args.steps):
        idx = draw(gen, dev, torch.randint, 0, len(codes), (args.batch,))
        x0, lab, tag = codes[idx], labels[idx], tags[idx]
        drop = draw(gen, dev, torch.rand, args.batch) < P_UNCOND
        lab = lab.masked_fill(drop, n_cat)
        tag = tag * (draw(gen, dev, torch.rand, tag.shape) < P_TAG) * (~drop[:, None])
        t = draw(gen, dev, torch.randint, 0, SCHEDULE["num_train_timesteps"], (args.batch,))
        eps = draw(gen, dev, torch.randn, x0.shape)
        a = alphas[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        loss = torch.nn.functional.mse_loss(net(xt, t, lab, tag), v)
        optimizer_step(loss, opt, sched, net, ema, step, clip=1.0)
        losses.append(loss.item())
        progress("diffusion", step, args.steps, losses, t0, sched.get_last_lr()[0])
    net.load_state_dict(ema.state_dict())
    return losses


def model_card(args, argv, nets, ae_losses, losses, times: dict) -> dict:
    command = "python scripts/train_shape_model.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    n_params = {
        name: sum(p.numel() for p in getattr(nets, name).parameters()) for name in ("encoder", "decoder", "denoiser")
    }
    return {
        "name": "meshdream-shape-latent-diffusion",
        "categories": list(CATEGORIES),
        "tags": list(TAGS),
        "steps_default": STEPS,
        "guidance_default": GUIDANCE,
        "schedule": {
            "train": {"class": "DDPMScheduler", **SCHEDULE},
            "sample": "DPMSolverMultistepScheduler(algorithm_type='dpmsolver++', solver_order=2) over standardized "
            "shape codes, fed noise predictions derived from v; the decoder turns the final codes into points",
        },
        "data": (
            f"{args.per_category} procedural shapes per category (training seeds, indices 0..{args.per_category - 1}"
            " per category, see meshdream.shapes.procedural.shape_seed), 2048 surface points each, normalized "
            "(bbox centre at origin, max radius 1); held-out shapes (evaluation) use seeds from "
            "procedural.HELDOUT_SEED0 on"
        ),
        "training": {
            "command": command,
            "autoencoder": {
                "steps": 0 if args.autoencoder else args.ae_steps,
                "reused_from": args.autoencoder,
                "fine_tuned_from": args.ae_init,
                "batch": args.ae_batch,
                "lr": args.ae_lr,
                "encoder_points": ENCODER_POINTS,
                "code_noise": args.code_noise,
                "loss": "Chamfer (squared, both ways) against all 2048 points + sliced_weight x sliced Wasserstein-2 "
                "(squared, 8 random directions per step)",
                "sliced_weight": args.sliced_weight,
                "final_loss": round(float(np.mean(ae_losses[-200:])), 6) if ae_losses else None,
            },
            "diffusion": {
                "steps": args.steps,
                "batch": args.batch,
                "lr": args.lr,
                "codes_per_cloud": ENCODINGS,
                "p_uncond": P_UNCOND,
                "p_keep_tag": P_TAG,
                "final_loss": round(float(np.mean(losses[-200:])), 5),
            },
            "ema_decay": 0.999,
            "seed": args.seed,
            "torch_threads": args.threads,
            "device": args.device,
            "parameters": n_params,
            "seconds": {k: round(v, 1) for k, v in times.items()},
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
    gen = torch.Generator().manual_seed(args.seed)
    t_start = time.perf_counter()
    data = build_set(args.per_category, "train")
    times = {"data": time.perf_counter() - t_start}
    print(f"data: {len(data.points)} clouds of {data.points.shape[1]} points in {times['data']:.0f} s", flush=True)
    dev = torch.device(args.device)
    points = torch.from_numpy(data.points).to(dev)

    if args.autoencoder:  # only encodes (no gradients); the denoiser is new. A copy: the loaded model is cached.
        nets = copy.deepcopy(load_shape_model(args.autoencoder).nets).to(dev)
        ae_losses = []
    else:  # built on the CPU, then moved: the same initial weights on every device (or a saved model's, --ae-init)
        config = ShapeModelConfig(n_categories=len(CATEGORIES), n_tags=len(TAGS), code=args.code)
        nets = copy.deepcopy(load_shape_model(args.ae_init).nets) if args.ae_init else ShapeNets(config)
        nets = nets.to(dev).requires_grad_(True).train()
        print(f"autoencoder: {args.ae_steps} steps of {args.ae_batch} clouds", flush=True)
        t = time.perf_counter()
        ae_losses = train_autoencoder(nets, points, args, gen)
        times["autoencoder"] = time.perf_counter() - t
        out = Path(args.out)  # the autoencoder alone, for --autoencoder
        save_shape_model(nets, {"stage": "autoencoder only"}, out.with_name(f"{out.stem}.autoencoder{out.suffix}"))
    nets.denoiser = CodeDenoiser(nets.config).to(dev)  # stage 2 always starts afresh

    t = time.perf_counter()
    codes = encode_all(nets, points, gen)
    nets.code_mean.copy_(codes.mean(0))
    nets.code_std.copy_(codes.std(0))
    codes = (codes - nets.code_mean) / nets.code_std
    labels = torch.from_numpy(data.labels).to(dev).repeat(ENCODINGS)
    tags = torch.from_numpy(data.tags.astype(np.float32)).to(dev).repeat(ENCODINGS, 1)
    losses = train_denoiser(nets, codes, labels, tags, args, gen)
    times["diffusion"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_start

    save_shape_model(nets, model_card(args, argv, nets, ae_losses, losses, times), Path(args.out))
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MB) in {times['total'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
