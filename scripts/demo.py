#!/usr/bin/env python3
"""MeshDream demo (`python build.py demo`): texture Suzanne offline with the built-in model, synchronized views.

Writes out/demo.glb (textured mesh), out/demo_texture.png and out/demo_preview.png (top row: the generated views;
bottom row: a shaded turntable of the textured mesh).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import meshdream
import numpy as np
from meshdream.images import contact_sheet, save_png

ROOT = Path(__file__).resolve().parents[1]


def shaded(mesh, texture, camera) -> np.ndarray:
    """Albedo times a soft headlight, on white: enough shading to read the shape in a preview."""
    maps = meshdream.render(mesh, camera)
    image = meshdream.render_texture(mesh, texture, camera, background=1.0, maps=maps)
    light = np.clip(maps.normal @ camera.rotation[2], 0, 1)  # towards the camera
    image[maps.mask] *= (0.45 + 0.55 * light[maps.mask])[:, None]
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--prompt", default="red brick")
    parser.add_argument("--strategy", default="sync", choices=meshdream.texturing.STRATEGIES)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--view-resolution", type=int, help="default: the model's own (its card's)")
    parser.add_argument("--texture-size", type=int, help="default: the model's own")
    parser.add_argument("--steps", type=int, help="default: the model's own")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    mesh = meshdream.load_mesh(Path(meshdream.__file__).parent / "assets" / "suzanne.obj")
    generator = meshdream.load_generator("builtin")
    args.view_resolution = args.view_resolution or generator.native_resolution
    args.texture_size = args.texture_size or generator.default_texture_size
    args.steps = args.steps or generator.default_steps
    result = meshdream.texture_mesh(
        mesh,
        args.prompt,
        generator,
        strategy=args.strategy,
        n_views=args.views,
        view_resolution=args.view_resolution,
        texture_size=args.texture_size,
        steps=args.steps,
        seed=args.seed,
    )
    glb = meshdream.save_textured(mesh, result.texture, args.out / "demo.glb", overwrite=True)
    save_png(result.texture, args.out / "demo_texture.png")
    turntable = [
        shaded(mesh, result.texture, c)
        for c in meshdream.orbit_cameras(
            args.views, resolution=args.view_resolution, mesh=mesh, elevations=[20.0] * args.views
        )
    ]
    views = [np.asarray(img) for _, img in result.views]
    save_png(contact_sheet(views + turntable, columns=args.views), args.out / "demo_preview.png")
    t = result.timings
    print(
        f"Textured suzanne.obj ({len(mesh.faces)} faces, unwrapped by xatlas) with the built-in model: "
        f"'{args.prompt}', {args.strategy} strategy, {args.views} views at {args.view_resolution} px, "
        f"{args.steps} steps, {args.texture_size}² texture,\nin {time.perf_counter() - t0:.1f} s (model "
        f"{t.get('model', 0):.1f} s, geometry {t.get('geometry', 0):.1f} s). Wrote {glb}, "
        f"{args.out / 'demo_texture.png'} and {args.out / 'demo_preview.png'} (views above, turntable below)."
    )


if __name__ == "__main__":
    main()
