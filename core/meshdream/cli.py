"""The `meshdream` command line. Errors print one line saying what to fix (no traceback); Ctrl-C exits 130."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import MeshDreamError


def _info(args) -> None:
    from .geometry import load_mesh

    mesh = load_mesh(args.mesh)
    meta = mesh.metadata["meshdream"]
    print(json.dumps({
        "file": str(args.mesh),
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "uvs": "unwrapped by xatlas" if meta["unwrapped"] else "kept from the file",
        "watertight": bool(mesh.is_watertight),
        "to_normalized": meta["to_normalized"],
    }, indent=2))


def _views(args) -> None:
    """Depth, normal and mask images of orbit views, plus the cameras: inputs for any depth-conditioned model."""
    from .geometry import load_mesh, orbit_cameras, render
    from .images import save_depth16, save_png

    mesh = load_mesh(args.mesh)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cameras = orbit_cameras(args.views, resolution=args.resolution, fov=args.fov, mesh=mesh)
    for k, cam in enumerate(cameras):
        maps = render(mesh, cam)
        save_depth16(maps.depth, out / f"view{k:02d}_depth.png")
        save_png(maps.normal * 0.5 + 0.5, out / f"view{k:02d}_normal.png")
        save_png(maps.mask.astype(float), out / f"view{k:02d}_mask.png")
    (out / "cameras.json").write_text(json.dumps([c.to_dict() for c in cameras], indent=1))
    print(f"Wrote {len(cameras)} views (depth, normal, mask) and cameras.json to {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshdream", description="Texture meshes and generate shapes with diffusion.")
    parser.add_argument("--version", action="version", version=f"meshdream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="load a mesh and report what MeshDream sees (faces, UVs, normalization)")
    p.add_argument("mesh")
    p.set_defaults(run=_info)

    p = sub.add_parser("views", help="render depth/normal/mask images of a mesh from orbit cameras")
    p.add_argument("mesh")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--fov", type=float, default=40.0)
    p.set_defaults(run=_views)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except MeshDreamError as exc:
        print(f"meshdream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshdream: interrupted; nothing more was written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
