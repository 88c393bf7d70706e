#!/usr/bin/env python3
"""`python build.py bench upscale`: the built-in upscaler against bicubic and Lanczos (issue 17).

Two sets, neither seen in training: held-out procedural textures (one per family, from the HELD_OUT seed stream of
scripts/train_upscale_model.py) and photographs bundled with scikit-image (grayscale ones as RGB). Each image is
area-downsampled x2 and x4 and upscaled back by each method; PSNR and SSIM (scikit-image, 4 border texels shaved)
are averaged per set. Bicubic and Lanczos are PIL's, per channel on floats (Lanczos is upscale_texture's
"lanczos"); the built-in model runs its tile function on the whole image. Time: upscale_texture on spot (tiles,
chart padding and all) to a 1024² output, at 2 torch threads. `--write-card` copies the figures into
weights/upscale_model.json's metrics.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from train_upscale_model import held_out_textures  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "brick", "grass", "gravel")
SCALES = (2, 4)
SHAVE = 4
THREADS = 2


def photos() -> dict[str, np.ndarray]:
    """skimage's bundled photographs as (h, w, 3) float32, cropped to a multiple of 4."""
    from skimage import data

    out = {}
    for name in PHOTOS:
        img = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        h, w = (d - d % 4 for d in img.shape[:2])
        out[name] = img[:h, :w].astype(np.float32) / 255
    return out


def area_down(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[0] // s, img.shape[1] // s
    return img.reshape(h, s, w, s, 3).mean((1, 3))


def pil_up(img: np.ndarray, s: int, kernel) -> np.ndarray:
    h, w = img.shape[:2]
    return np.stack([np.asarray(Image.fromarray(img[..., c]).resize((w * s, h * s), kernel)) for c in range(3)], -1)


def scores(images: dict[str, np.ndarray], s: int, methods: dict) -> dict:
    """Mean PSNR / SSIM per method over the images."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    res = {m: {"psnr": [], "ssim": []} for m in methods}
    for hr in images.values():
        lr = area_down(hr, s)
        ref = hr[SHAVE:-SHAVE, SHAVE:-SHAVE]
        for m, up in methods.items():
            out = np.clip(up(lr, s), 0, 1)[SHAVE:-SHAVE, SHAVE:-SHAVE]
            res[m]["psnr"].append(peak_signal_noise_ratio(ref, out, data_range=1.0))
            res[m]["ssim"].append(structural_similarity(ref, out, channel_axis=2, data_range=1.0))
    table = {m: {k: round(float(np.mean(v)), 4 if k == "ssim" else 2) for k, v in r.items()} for m, r in res.items()}
    best_other = max(table["bicubic"]["psnr"], table["lanczos"]["psnr"])
    table["target"] = "builtin PSNR > bicubic and lanczos"
    table["target_met"] = table["builtin"]["psnr"] > best_other
    table["builtin_gain_db"] = round(table["builtin"]["psnr"] - best_other, 2)
    return table


def seconds_per_1024(scale: int) -> dict:
    """Seconds to a 1024² output (best of 2, after a warm-up): upscale_texture on spot with its default tiles
    (256² and 32 texels of overlap: 3 x 3 tiles at x2, 1 at x4) and with one 512² tile, and the tile function on the
    whole input. The default tiles suit large models' memory; the built-in model needs little, and one tile spares
    the overlap's extra work."""
    import meshdream
    from meshdream.generators.builtin.upscaler import load_builtin_upscaler

    mesh = meshdream.load_mesh(Path(meshdream.__file__).parent / "assets" / "spot.obj")
    texture = held_out_textures(1, 1024 // scale)[0]
    run_tile = load_builtin_upscaler(scale, "cpu")
    calls = {
        "upscale_texture": lambda: meshdream.upscale_texture(mesh, texture, scale=scale, upscaler="builtin"),
        "upscale_texture_tile_512": lambda: meshdream.upscale_texture(mesh, texture, scale=scale, tile=512),
        "model_only": lambda: run_tile(texture),
    }
    out = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(2):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        out[name] = round(min(times), 2)
    return out


def run() -> dict:
    """The figures at THREADS torch threads (bench.py runs other benchmarks in this process: restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return measure()
    finally:
        torch.set_num_threads(threads)


def measure() -> dict:
    from meshdream.generators.builtin.upscaler import load_builtin_upscaler
    from meshdream.generators.upscalers import _lanczos

    builtin = {s: load_builtin_upscaler(s, "cpu") for s in SCALES}
    methods = {
        "builtin": lambda lr, s: builtin[s](lr),
        "bicubic": lambda lr, s: pil_up(lr, s, Image.BICUBIC),
        "lanczos": lambda lr, s: _lanczos(lr, s),
    }
    procedural = {f"held_out_{k}": t for k, t in enumerate(held_out_textures(12, 256))}
    sets = {"procedural_held_out": procedural, "photos": photos()}
    out: dict = {
        "setup": (
            f"HR area-downsampled x2/x4, upscaled back; PSNR/SSIM with {SHAVE} border texels shaved, mean per set; "
            f"procedural: {len(procedural)} held-out 256² textures (one per family); photos: skimage {PHOTOS}"
        )
    }
    for s in SCALES:
        out[f"x{s}"] = {name: scores(images, s, methods) for name, images in sets.items()}
    out["time_s_per_1024_output"] = {f"x{s}": seconds_per_1024(s) for s in SCALES}
    out["time_setup"] = (
        f"{THREADS} torch threads; a 512² (x2) or 256² (x4) held-out texture to 1024²: upscale_texture(spot, "
        "texture, upscaler='builtin') with default tiles (on CUDA where there is one), and the built-in tile "
        "function on the whole texture on the CPU"
    )
    out["cuda"] = torch.cuda.is_available()
    out["load_average_1min"] = round(os.getloadavg()[0], 2)  # other work on the cores slows the timings
    out["target_met"] = all(out[f"x{s}"][name]["target_met"] for s in SCALES for name in sets)
    return out


if __name__ == "__main__":
    result = run()
    print(json.dumps(result, indent=2))
    if "--write-card" in sys.argv:
        card_path = ROOT / "core" / "meshdream" / "weights" / "upscale_model.json"
        card = json.loads(card_path.read_text())
        card["metrics"] = {**card.get("metrics", {}), "bench": result}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
