#!/usr/bin/env python3
"""Train MeshDream's built-in texture model from procedural data (no downloads).

    python scripts/train_texture_model.py --device cuda --out OUT   # shipped v2.1: 5000 steps, 338 s on an H200

Writes OUT/texture_model.safetensors (EMA weights, float16) and texture_model.json (the model card: configuration,
scheduler, data, command, wall time, the defaults texturing uses with it; scripts/eval_texture_model.py adds its
metrics); the default OUT is core/meshdream/weights. The renders (dataset.py: 3D-wrapped materials on 36 meshes)
are made by `--workers` processes; `--device cuda` then trains on a GPU (bfloat16 autocast): the renders, both
networks and the loss live there, and every random draw is still made on the CPU (one seeded generator) and moved,
so a seed draws the same batches on every device. `--time-limit` (seconds from the start, data included) stops
early, saving what it has; the card then records the steps done and a `reproduce` command with that many
`--steps`. On 2 CPU cores one step of the defaults takes ~15 s: this model is trained on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from meshdream.generators.builtin.dataset import make_renders, training_meshes  # noqa: E402
from meshdream.generators.builtin.materials import FAMILIES  # noqa: E402
from meshdream.generators.builtin.model import DEFAULT_CONFIG, TextureModel, geometry_channels, pad_ids  # noqa: E402
from meshdream.generators.builtin.vocab import WORD_ID  # noqa: E402

SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}


def to_tensors(r):
    albedo = torch.from_numpy(r.albedo).permute(0, 3, 1, 2).float() / 127.5 - 1
    depth = torch.from_numpy(r.depth.astype(np.float32))[:, None]
    normal = torch.from_numpy(r.normal.astype(np.float32)).permute(0, 3, 1, 2) / 127
    return albedo, depth, normal


def prompt_ids(r, idx, drop: float, rng: np.random.Generator) -> list[list[int]]:
    out = []
    for i in idx:
        ids = [WORD_ID[FAMILIES[r.family[i]]]]
        if r.colour[i] >= 0:
            ids.append(WORD_ID[r.colour_names[r.colour[i]]])
        out.append([] if rng.random() < drop else ids)
    return out


def put(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A CPU tensor on `dev`; on CUDA pinned and copied asynchronously, so the host queues the next step while the
    GPU still runs this one (a plain .to() waits for the GPU at every copy, and the step is overhead-bound)."""
    return t.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else t.to(dev)


def crops(albedo, depth, normal, idx, size, gen):
    """The same random size² window of each selected render from every tensor (on their device), mirrored left to
    right for a random half (the normals' x with it): twice the views for free."""
    full = albedo.shape[-1]
    oy = torch.randint(0, full - size + 1, (len(idx),), generator=gen)
    ox = torch.randint(0, full - size + 1, (len(idx),), generator=gen)
    mirror = torch.rand(len(idx), generator=gen) < 0.5
    ar = torch.arange(size)
    dev = albedo.device
    iy = put((oy[:, None] + ar)[:, :, None], dev)
    ix = put((ox[:, None] + torch.where(mirror[:, None], size - 1 - ar, ar))[:, None, :], dev)
    b = put(torch.as_tensor(idx)[:, None, None], dev)
    x0, d, n = (t[b, :, iy, ix].permute(0, 3, 1, 2).contiguous() for t in (albedo, depth, normal))
    flip = torch.ones(len(idx), 3, 1, 1)
    flip[:, 0] = torch.where(mirror, -1.0, 1.0)[:, None, None]
    return x0, d, n * put(flip, dev)


def known_masks(n, size, gen):
    """Half the batch learns plain generation (nothing known); the rest inpaints around random blobs."""
    coarse = torch.rand(n, 1, 4, 4, generator=gen)
    blobs = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    level = torch.rand(n, 1, 1, 1, generator=gen)
    mask = (blobs < level).float()
    mask[torch.rand(n, generator=gen) < 0.5] = 0
    return mask


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds (0: never)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine", help="learning rate after warm-up")
    p.add_argument("--min-snr", type=float, default=5.0, help="min-SNR-gamma loss weighting (0: plain v-loss)")
    p.add_argument("--channels", type=int, nargs="+", default=DEFAULT_CONFIG["block_out_channels"])
    p.add_argument("--layers", type=int, default=DEFAULT_CONFIG["layers_per_block"])
    p.add_argument("--textures", type=int, default=4000)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--resolution", type=int, default=128, help="of the renders: the views the model will make")
    p.add_argument("--crop", type=int, default=128, help="training window (the resolution: whole views)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes rendering the data")
    p.add_argument("--out", type=Path, default=ROOT / "core" / "meshdream" / "weights", help="folder for the weights")
    p.add_argument("--save-every", type=int, default=250, help="also write the weights every N steps")
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    args.command = "python scripts/train_texture_model.py " + " ".join(argv)
    # The same run without the time limit (and into the shipped weights' folder): add --steps <steps done>.
    dropped = {"--time-limit", "--out", "--steps"}
    kept = [a for k, a in enumerate(argv) if a not in dropped and (k == 0 or argv[k - 1] not in dropped)]
    args.reproduce = "python scripts/train_texture_model.py " + " ".join(kept)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()

    meshes = training_meshes()
    renders = make_renders(args.textures, args.views, args.resolution, args.seed, meshes, workers=args.workers)
    dev = torch.device(args.device)
    albedo, depth, normal = (t.to(dev) for t in to_tensors(renders))
    t_data = time.time() - t0
    print(f"data: {len(albedo)} renders of {len(meshes)} meshes in {t_data:.0f} s", flush=True)

    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**SCHEDULER)
    snr = (sched.alphas_cumprod / (1 - sched.alphas_cumprod)).to(dev)
    config = {**DEFAULT_CONFIG, "block_out_channels": args.channels, "layers_per_block": args.layers}
    config["sample_size"] = args.resolution
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolutions once
    model = TextureModel(config).to(dev)
    ema = TextureModel(config).to(dev)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4, fused=dev.type == "cuda")

    def lr_at(s):
        decay = 0.5 * (1 + math.cos(math.pi * s / args.steps)) if args.schedule == "cosine" else 1.0
        return args.lr * min(1.0, (s + 1) / 100) * decay

    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)
    losses = []
    for step in range(args.steps):
        idx = rng.integers(0, len(albedo), args.batch)
        x0, d, n = crops(albedo, depth, normal, idx, args.crop, gen)
        km = put(known_masks(args.batch, args.crop, gen), dev)
        cond = torch.cat([geometry_channels(d, n), x0 * km, km], dim=1)
        noise = put(torch.randn(x0.shape, generator=gen), dev)
        t = put(torch.randint(0, SCHEDULER["num_train_timesteps"], (args.batch,), generator=gen), dev)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        with torch.autocast("cuda", torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext():
            emb = model.prompt(put(pad_ids(prompt_ids(renders, idx, 0.1, rng)), dev))
            out = model(xt, t, cond, emb)
        err = (out.float() - target).pow(2).mean((1, 2, 3))
        # min-SNR-gamma (Hang et al. 2023) for v-prediction: weight min(snr, gamma) / (snr + 1) keeps the easy,
        # low-noise steps from dominating, which speeds up convergence several-fold.
        w = snr[t].clamp(max=args.min_snr) / (snr[t] + 1) if args.min_snr else torch.ones_like(err)
        loss = (w * err).mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
        losses.append(loss.detach())  # read back only when printed: .item() would wait for the GPU every step
        done = step + 1
        out_of_time = bool(args.time_limit) and time.time() - t0 > args.time_limit
        if step % 100 == 0 or step in (10, 50) or done == args.steps or out_of_time:
            print(f"step {step} loss {recent(losses):.4f} ({time.time() - t0:.0f} s)", flush=True)
        if done % args.save_every == 0 or done == args.steps or out_of_time:
            save(args, config, ema, n_params, len(albedo), len(meshes), done, losses, t0, t_data)
        if out_of_time:
            print(f"time limit: stopped after {done} of {args.steps} steps", flush=True)
            break


def recent(losses: list) -> float:
    return float(torch.stack(losses[-100:]).mean())


def save(args, config, ema, n_params, n_renders, n_meshes, steps_done, losses, t0, t_data) -> None:
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    # float16 halves the file (the loader copies into float32 parameters); 7 M parameters fit in 15 MB.
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in ema.state_dict().items()}
    save_file(state, str(args.out / "texture_model.safetensors"))
    card_path = args.out / "texture_model.json"
    card_path.write_text(
        json.dumps(
            {
                "model": "MeshDream built-in texture model v2: pixel-space UNet2DModel (diffusers), v-prediction",
                "config": config,
                "scheduler": SCHEDULER,
                "parameters": n_params,
                "weights_dtype": "float16",
                # What texturing uses unless told otherwise (Generator.native_resolution, default_*): the views the
                # model was trained on, a texture with about two texels per view pixel, the sampler settings.
                "defaults": {"view_resolution": args.resolution, "texture_size": 4 * args.resolution, "steps": 20},
                "guidance": 3.0,
                "data": {
                    "textures": args.textures,
                    "views_per_texture": args.views,
                    "renders": n_renders,
                    "resolution": args.resolution,
                    "crop": args.crop,
                    "mapping": "triplanar (3D), albedo anti-aliased 2x2, mirrored at random",
                    "families": list(FAMILIES),
                    "meshes": n_meshes,
                },
                "training": {
                    "command": args.command,
                    "reproduce": f"{args.reproduce} --steps {steps_done}",
                    "steps": steps_done,
                    "steps_asked": args.steps,
                    "time_limit_s": args.time_limit,
                    "batch": args.batch,
                    "seed": args.seed,
                    "lr": args.lr,
                    "lr_schedule": args.schedule,
                    "min_snr_gamma": args.min_snr,
                    "device": args.device,
                    "gpu": torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else None,
                    "threads": torch.get_num_threads(),
                    "workers": args.workers,
                    "wall_s": round(time.time() - t0, 1),
                    "data_s": round(t_data, 1),
                    "final_loss_100": round(recent(losses), 4),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out / 'texture_model.safetensors'} and {card_path} at step {steps_done}", flush=True)


if __name__ == "__main__":
    main()
