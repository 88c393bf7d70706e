#!/usr/bin/env python3
"""Train MeshDream's built-in material model on procedural materials, on the CPU (no downloads).

    python scripts/train_material_model.py            # the shipped weights: 2 threads, see material_model.json

Writes OUT/material_model.safetensors (float16) and material_model.json (the model card: configuration, data,
command, seed, wall time, held-out figures); the default OUT is core/meshdream/weights.
Data: materials.material_maps (albedo with its roughness, metallic and height; height -> normal), a quarter of them
blended with a second material along a soft noise edge (labels blended alike), seen as a view would see them:
turned by any angle, maybe mirrored, at 0.3-1.5 material texels per view pixel, rendered at twice the resolution
and averaged (anti-aliased; the normal label is the averaged normal, renormalized), under random silhouettes.
Normal labels turn with the view: a view axis q = (s R F)^-1 m of the material's axes m sees a normal's x, y as
(R F)^T (x, y). The colour is jittered (gain, gamma, slight blur and noise, 8 bits) as a generated texture differs
from the procedural one; the prompt's family is given for 70% of the crops, none for the rest.
The learning rate halves every `--half-life` steps (not over a planned length), so a run stopped by `--time-limit`
equals a run of `--steps <steps done>` (the card's `reproduce`). Training textures come from seed streams
(TRAIN, seed, k), held-out ones from (HELD_OUT, k): the two never share a texture.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

from meshdream.generators.builtin.material_model import DEFAULT_CONFIG, MaterialNet, normal_from_xy  # noqa: E402
from meshdream.generators.builtin.materials import (  # noqa: E402
    COLOURS,
    DEFAULT_COLOUR,
    FAMILIES,
    fractal_noise,
    height_to_normal,
    material_maps,
)

TRAIN, HELD_OUT = 0, 1  # first word of every texture's seed: training and evaluation streams never meet
SCALE = (0.3, 1.5)  # material texels per view pixel (log-uniform)
FAMILY_DROP = 0.3  # share of crops trained without the prompt's family
NORMAL_WEIGHT = 30.0  # of the normal's squared error (x, y are small: mostly under 0.3)
SIZE = 256  # of the materials


def make_texture(rng: np.random.Generator, family: str | None = None, blend: float = 0.25) -> tuple[np.ndarray, int]:
    """(8, SIZE, SIZE) float32: albedo (3), roughness, metallic, normal (3, tangent space, y up); and the family
    index (of the first material where two are blended)."""

    def one(fam: str) -> np.ndarray:
        colour = DEFAULT_COLOUR[fam] if rng.random() < 0.2 else str(rng.choice(list(COLOURS)))
        m = material_maps(fam, colour, SIZE, rng)
        normal = height_to_normal(m["height"])
        return np.concatenate([m["albedo"], m["roughness"][..., None], m["metallic"][..., None], normal], -1)

    fam = family or str(rng.choice(FAMILIES))
    out = one(fam)
    if rng.random() < blend:
        edge = fractal_noise(rng, SIZE, 3.0)
        t = np.clip((edge - np.median(edge)) * rng.uniform(10, 100) + 0.5, 0, 1)[..., None]
        out = out * t + one(str(rng.choice(FAMILIES))) * (1 - t)
        out[..., 5:] /= np.linalg.norm(out[..., 5:], axis=-1, keepdims=True)
    return out.transpose(2, 0, 1).astype(np.float32), FAMILIES.index(fam)


def views(
    pool: torch.Tensor,
    index: np.ndarray,
    crop: int,
    rng: np.random.Generator,
    scale=None,
    turn=None,
    mirror=None,
    scale_range=SCALE,
    aliased: float = 0.0,
) -> torch.Tensor:
    """(n, 8, crop, crop) views of pool[index] (materials pre-padded by one texel, wrapped): each turned, mirrored
    and scaled (log-uniform in scale_range texels per pixel) at random (or as given), sampled at twice the
    resolution and averaged, normals turned with it. A share `aliased` is point-sampled instead (one sample per
    pixel, labels alike), as meshdream.render_texture renders the views the model reads in use."""
    n = len(index)
    scale = np.exp(rng.uniform(*np.log(scale_range), n)) if scale is None else np.asarray(scale, float)
    turn = rng.uniform(0, 2 * np.pi, n) if turn is None else np.asarray(turn, float)
    mirror = rng.random(n) < 0.5 if mirror is None else np.asarray(mirror, bool)
    c, s = np.cos(turn), np.sin(turn)
    q = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n, 2, 2) rotation R
    q[mirror, :, 0] *= -1  # R F, F mirroring x
    fine = 2 * crop
    p = (np.arange(fine) + 0.5 - fine / 2) / 2  # view pixels, centred
    px, py = np.meshgrid(p, -p)  # y up
    m = np.einsum("nij,jhw->nhwi", q * scale[:, None, None], np.stack([px, py]))  # material texels, y up
    m += rng.uniform(0, SIZE, (n, 1, 1, 2))
    col, row = m[..., 0] % SIZE, (-m[..., 1]) % SIZE  # texel-centre coordinates on the wrapped material
    padded = SIZE + 2
    grid = np.stack([(2 * (col + 1) + 1) / padded - 1, (2 * (row + 1) + 1) / padded - 1], -1)
    out = F.grid_sample(
        pool[torch.from_numpy(index)].float(), torch.from_numpy(grid).float(), align_corners=False, mode="bilinear"
    )
    point = torch.from_numpy(rng.random(n) < aliased) if aliased else torch.zeros(n, dtype=torch.bool)
    out = torch.where(point[:, None, None, None], out[..., ::2, ::2], F.avg_pool2d(out, 2))
    qt = torch.from_numpy(q.transpose(0, 2, 1)).float()
    xy = torch.einsum("nij,njhw->nihw", qt, out[:, 5:7])
    normal = torch.cat([xy, out[:, 7:8]], 1)
    return torch.cat([out[:, :5], normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-6)], 1)


def silhouettes(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """(n, 1, size, size) masks: half full, half a smooth random blob covering 40-90% of the view."""
    noise = F.interpolate(torch.from_numpy(rng.random((n, 1, 5, 5))).float(), size=(size, size), mode="bicubic")
    level = torch.quantile(noise.flatten(1), torch.from_numpy(rng.uniform(0.1, 0.6, n)).float(), dim=1).diagonal()
    mask = (noise > level[:, None, None, None]).float()
    mask[torch.from_numpy(rng.random(n) < 0.5)] = 1.0
    return mask


def jitter(colour: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A generated texture is not the procedural one: gain, gamma, sometimes a slight blur or noise; 8 bits."""
    n = len(colour)
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 3, 1, 1))).float()
    gamma = torch.from_numpy(rng.uniform(0.8, 1.25, (n, 1, 1, 1))).float()
    colour = (colour * gain).clamp(0, 1) ** gamma
    blur = torch.from_numpy(rng.random(n) < 0.25)
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        kernel = (k[:, None] * k[None]).expand(3, 1, 3, 3)
        colour[blur] = F.conv2d(F.pad(colour[blur], (1,) * 4, mode="replicate"), kernel, groups=3)
    noisy = torch.from_numpy(rng.random(n) < 0.25)
    colour[noisy] += torch.randn_like(colour[noisy]) * 0.01
    return torch.round(colour.clamp(0, 1) * 255) / 255


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between unit vectors along dim 1, in degrees."""
    return torch.rad2deg(torch.acos((a * b).sum(1).clamp(-1, 1)))


@torch.no_grad()
def held_out(model: MaterialNet, per_family: int = 3, crop: int = 96) -> dict:
    """Figures on views of held-out textures (HELD_OUT seeds, families in turn), with the prompt's family and
    without: roughness MAE vs the constant 0.5, metallic mean per family, normal angular error vs flat."""
    n = per_family * len(FAMILIES)
    rng = np.random.default_rng([HELD_OUT, 0])
    made = [make_texture(np.random.default_rng([HELD_OUT, k]), FAMILIES[k % len(FAMILIES)]) for k in range(n)]
    pool = F.pad(torch.from_numpy(np.stack([t for t, _ in made])), (1,) * 4, mode="circular")
    target = views(pool, np.arange(n), crop, rng)
    mask = silhouettes(n, crop, rng)
    fam = torch.tensor([f for _, f in made])
    flat = torch.zeros_like(target[:, 5:8])
    flat[:, 2] = 1
    on = mask[:, 0] > 0
    out = {}
    for name, family in (("with_family", fam + 1), ("without_family", torch.zeros_like(fam))):
        pred = model(target[:, :3], mask, family)
        pred[:, :2] = torch.sigmoid(pred[:, :2])
        normal = normal_from_xy(pred[:, 2:])
        err = angle_deg(normal, target[:, 5:8])[on]
        out[name] = {
            "roughness_mae": round(float((pred[:, 0] - target[:, 3]).abs()[on].mean()), 4),
            "metallic_mean_per_family": {
                f: round(float(pred[fam == i, 1][on[fam == i]].mean()), 3) for i, f in enumerate(FAMILIES)
            },
            "normal_angle_deg": round(float(err.mean()), 2),
        }
    out["baselines"] = {
        "roughness_mae_constant_0.5": round(float((0.5 - target[:, 3]).abs()[on].mean()), 4),
        "normal_angle_deg_flat": round(float(angle_deg(flat, target[:, 5:8])[on].mean()), 2),
    }
    out["setup"] = (
        f"{n} held-out textures ({per_family} per family, seeds ({HELD_OUT}, k)), one {crop}² view each at a random "
        f"turn, mirror and scale in {SCALE} texels per pixel, under random silhouettes; figures over the mask"
    )
    return out


def reproduce(args, steps_done: int) -> str:
    """The commands that remake these weights from nothing: the init's own chain, each stage in /tmp/stage<k>."""
    this = f"{args.reproduce} --steps {steps_done}"
    if args.init_card is None:
        return this
    earlier = args.init_card["reproduce"]
    stage = f"/tmp/stage{earlier.count(' && ') + 1}"
    return f"{earlier} --out {stage} && {this} --init {stage}/material_model.safetensors"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds (0: never)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=48, help="view size in pixels (a multiple of 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--half-life", type=int, default=1000, help="steps in which the learning rate halves")
    p.add_argument("--textures", type=int, default=480, help="materials in the training pool")
    p.add_argument("--blend", type=float, default=0.25, help="share of training materials blended with a second one")
    p.add_argument("--family-drop", type=float, default=FAMILY_DROP, help="share of crops without the family")
    p.add_argument("--normal-weight", type=float, default=NORMAL_WEIGHT, help="of the normal's squared error")
    p.add_argument("--scale", type=float, nargs=2, default=SCALE, help="material texels per view pixel (range)")
    p.add_argument("--aliased", type=float, default=0.0, help="share of views point-sampled, not anti-aliased")
    p.add_argument("--init", type=Path, default=None, help="start from these weights (a .safetensors file)")
    p.add_argument("--colour-slope", action="store_true", help="the net also reads each colour channel's slope")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed, so the run is reproducible)")
    p.add_argument("--out", type=Path, default=ROOT / "core" / "meshdream" / "weights", help="folder for the weights")
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    args.command = " ".join(["python scripts/train_material_model.py", *argv])
    dropped = {"--time-limit", "--out", "--steps", "--init"}
    kept = [a for k, a in enumerate(argv) if a not in dropped and (k == 0 or argv[k - 1] not in dropped)]
    args.reproduce = " ".join(["python scripts/train_material_model.py", *kept])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng([TRAIN, args.seed])
    t0 = time.time()

    made = [
        make_texture(np.random.default_rng([TRAIN, args.seed, k]), FAMILIES[k % len(FAMILIES)], args.blend)
        for k in range(args.textures)
    ]
    pool = F.pad(torch.from_numpy(np.stack([t for t, _ in made])), (1,) * 4, mode="circular").half()
    families = np.array([f for _, f in made])
    t_data = time.time() - t0
    print(f"data: {len(pool)} materials of {SIZE}² in {t_data:.0f} s", flush=True)

    model = MaterialNet({**DEFAULT_CONFIG, "colour_slope": args.colour_slope})
    torch.nn.init.zeros_(model.head.weight)  # starts at roughness and metallic 0.5 and flat normals: the baselines
    torch.nn.init.zeros_(model.head.bias)
    args.init_card = None
    if args.init is not None:  # a warm start: fine-tune earlier weights (their card's reproduce comes first)
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(args.init)).items()}
        first, want = state["enc1.0.0.weight"], model.enc1[0][0].weight
        if first.shape[1] < want.shape[1]:  # inputs the earlier net lacked start at zero: the same function at first
            state["enc1.0.0.weight"] = torch.cat(
                [first, first.new_zeros(len(first), want.shape[1] - first.shape[1], 3, 3)], 1
            )
        model.load_state_dict(state)
        init_card = args.init.with_suffix(".json")
        if init_card.exists():
            args.init_card = json.loads(init_card.read_text())["training"]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    losses: list[float] = []
    parts: list[list[float]] = []
    done = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 50) * 0.5 ** (step / args.half_life)
        index = rng.integers(0, len(pool), args.batch)
        target = views(pool, index, args.crop, rng, scale_range=args.scale, aliased=args.aliased)
        mask = silhouettes(args.batch, args.crop, rng)
        family = torch.from_numpy(np.where(rng.random(args.batch) < args.family_drop, 0, families[index] + 1))
        pred = model(jitter(target[:, :3], rng), mask, family)
        w = mask / mask.sum()
        bce = F.binary_cross_entropy_with_logits(pred[:, :2], target[:, 3:5], reduction="none")
        loss = (bce * w).sum() + args.normal_weight * (((pred[:, 2:4] - target[:, 5:7]) ** 2) * w).sum()
        with torch.no_grad():  # the figures the loss stands for: L1 of roughness, metallic, normal (x, y)
            parts.append(
                [float(((torch.sigmoid(pred[:, i]) - target[:, 3 + i]).abs() * w[:, 0]).sum()) for i in (0, 1)]
            )
            parts[-1].append(float(((pred[:, 2:4] - target[:, 5:7]).abs() * w).sum()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done = step + 1
        out_of_time = bool(args.time_limit) and time.time() - t0 > args.time_limit
        if step % 50 == 0 or done == args.steps or out_of_time:
            l1 = np.mean(parts[-50:], 0)
            print(
                f"step {step} loss {np.mean(losses[-50:]):.5f} L1 roughness {l1[0]:.4f} metallic {l1[1]:.4f} "
                f"normal xy {l1[2]:.4f} ({time.time() - t0:.0f} s)",
                flush=True,
            )
        if done == args.steps or out_of_time:
            break
    model.eval()
    save(args, model, n_params, done, losses, t0, t_data)


def save(args, model: MaterialNet, n_params: int, steps_done: int, losses: list, t0: float, t_data: float) -> None:
    from safetensors.torch import save_file

    wall = time.time() - t0
    metrics = held_out(model)
    print(f"held-out: {json.dumps(metrics)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "material_model.safetensors"))
    card = {
        "model": "MeshDream built-in material model: 3-level conv U-Net reading colour, mask and the slope of the "
        f"{'luminance and of each colour channel' if args.colour_slope else 'luminance'}, prompt family bias and "
        "masked-mean context at 1/4 resolution; roughness, metallic and the detail normal's x, y per pixel",
        "config": model.config,
        "parameters": n_params,
        "weights_dtype": "float16",
        "data": {
            "textures": args.textures,
            "size": SIZE,
            "crop": args.crop,
            "families": list(FAMILIES),
            "making": f"materials.material_maps (height -> normal), {args.blend:.0%} blended with a second material "
            f"along a soft noise edge; views turned, mirrored and scaled ({tuple(args.scale)} texels per pixel), 2x "
            f"supersampled ({args.aliased:.0%} point-sampled); random silhouettes; colour gain/gamma/blur/noise "
            f"jitter, 8 bits; family withheld for {args.family_drop:.0%}",
            "seed_streams": {"train": [TRAIN, args.seed, "k"], "held_out": [HELD_OUT, "k"]},
        },
        "training": {
            "command": args.command,
            "reproduce": reproduce(args, steps_done),
            "init": None if args.init is None else {"weights": str(args.init), "training": args.init_card},
            "steps": steps_done,
            "steps_asked": args.steps,
            "time_limit_s": args.time_limit,
            "batch": args.batch,
            "seed": args.seed,
            "loss": f"masked binary cross-entropy of roughness and metallic + {args.normal_weight} x squared error of the "
            "normal's x, y",
            "optimizer": "Adam",
            "lr": args.lr,
            "lr_schedule": f"50-step warm-up, then halved every {args.half_life} steps",
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "wall_s": round(wall, 1),
            "data_s": round(t_data, 1),
            "final_loss_50": round(float(np.mean(losses[-50:])), 5),
        },
        "metrics": {"held_out_views": metrics},
    }
    (args.out / "material_model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {args.out / 'material_model.safetensors'} and material_model.json at step {steps_done}", flush=True)


if __name__ == "__main__":
    main()
