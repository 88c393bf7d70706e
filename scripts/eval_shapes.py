#!/usr/bin/env python3
"""Evaluate the shipped shape model: `python scripts/eval_shapes.py` prints one JSON object (`bench_shapes()`).

Protocol (PVD / LION): per category, `n` generated clouds against `n` held-out procedural shapes (seeds never
used in training), 2048 points each, every cloud normalized alike (bounding-box centre at the origin, farthest
point at radius 1); 1-NNA, COV and MMD with Chamfer distance (and EMD on point subsets with --emd-points).
Two reference rows make the numbers readable: "other_category" (held-out shapes of random other categories:
what a useless model scores) and "oracle" (more held-out shapes of the same category: what a perfect model
scores with this many samples). Also: seconds to sample one 2048-point shape and to mesh it (points_to_mesh,
UV unwrap included), and the share of generated shapes whose mesh is closed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import trimesh
from meshdream.shapes import is_closed, points_to_mesh
from meshdream.shapes.metrics import chamfer_matrix, compare, emd_matrix, subsample
from meshdream.shapes.procedural import CATEGORIES, build_set, normalize_cloud
from meshdream.shapes.sampler import WEIGHTS, load_shape_model, sample_points
from scipy.spatial import cKDTree

TARGETS = {"1nna_cd_pct_mean": 65.0, "sample_s": 2.0, "mesh_s": 1.0, "watertight_pct": 100.0}


def _generate(model, category: str, n: int, steps: int, guidance: float, batch: int = 4) -> np.ndarray:
    """n clouds of one category, seeds 0..n-1 (the clouds generate_shape(category, seed=i) returns)."""
    label, tags = model.categories.index(category), np.zeros((1, len(model.tags)), np.float32)
    out = [
        sample_points(model, [label] * len(s), np.repeat(tags, len(s), 0), 2048, list(s), steps, guidance)
        for s in np.array_split(np.arange(n), max(1, n // batch))
    ]
    return normalize_cloud(np.concatenate(out))


def _median_time(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(float(np.median(times)), 3)


def surface_samples(mesh, count: int = 4096, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    points, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return points, mesh.face_normals[faces]


def normal_error(mesh, cloud: np.ndarray, ref: np.ndarray, ref_meshes: dict) -> float:
    """Mean unsigned angle (degrees) between `mesh`'s surface normals and those of the nearest reference shape (by
    Chamfer distance of the clouds; its mesh by points_to_mesh, cached in ref_meshes) at the nearest samples: how
    well the surface is oriented, which Chamfer-based 1-NNA alone does not see (blobby thin parts, wavy planes)."""
    k = int(np.argmin(chamfer_matrix(cloud[None], ref)[0]))
    if k not in ref_meshes:
        ref_meshes[k] = surface_samples(points_to_mesh(ref[k], unwrap=False))
    ref_points, ref_normals = ref_meshes[k]
    points, normals = surface_samples(mesh)
    _, nearest = cKDTree(ref_points).query(points)
    cos = np.abs(np.einsum("ij,ij->i", normals, ref_normals[nearest]))
    return float(np.degrees(np.arccos(np.clip(cos, 0, 1))).mean())


def contact_sheet_of_shapes(path: Path, weights: str | None = None, per_category: int = 4, px: int = 128) -> None:
    """`per_category` shapes of every category (seeds 0..), meshed and lit from the upper left: one row per
    category, labelled, written to `path` (PNG), for a person to see whether legs and stems come out thin."""
    from meshdream.geometry import Camera, render
    from meshdream.images import contact_sheet, save_png

    model = load_shape_model(weights)
    light = np.array([-0.4, 0.5, 0.77]) / np.linalg.norm([-0.4, 0.5, 0.77])  # camera frame
    el, az = np.radians(20.0), np.radians(35.0)  # shapes are normalized: radius 1 about the origin, y up
    cam = Camera.look_at(3.2 * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)]), resolution=px)
    tiles = []
    for cat in CATEGORIES:
        for cloud in _generate(model, cat, per_category, model.default_steps, model.default_guidance):
            mesh = points_to_mesh(cloud, unwrap=False)
            maps = render(mesh, cam)
            shade = 0.2 + 0.8 * np.abs(maps.normal @ cam.rotation.T @ light)
            tiles.append(np.where(maps.mask[..., None], shade[..., None] * np.array([0.85, 0.8, 0.7]), 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(contact_sheet(tiles, columns=per_category, row_labels=CATEGORIES, label_width=70), path)


def bench_shapes(
    n: int = 24,
    steps: int | None = None,
    guidance: float | None = None,
    emd_points: int = 256,
    meshes_per_category: int = 3,
    seed: int = 0,
    weights: str | None = None,
    categories: tuple[str, ...] = CATEGORIES,
    baselines: bool = True,
) -> dict:
    """The evaluation above as a dict. n: clouds per category and set; emd_points: EMD metrics from an exact
    matching of that many points per cloud (0: none; 256 adds a few minutes). weights: other .safetensors to
    evaluate; categories / baselines=False: a quicker partial run (e.g. to compare sampler settings)."""
    t0 = time.perf_counter()
    model = load_shape_model(weights)
    steps = model.default_steps if steps is None else int(steps)
    guidance = model.default_guidance if guidance is None else float(guidance)
    rng = np.random.default_rng(seed)
    per_cat, gen_all, refs, t_gen = {}, {}, {}, 0.0
    for k, cat in enumerate(categories):
        ref = refs[cat] = build_set(n, "heldout", categories=(cat,)).points
        t = time.perf_counter()
        gen = gen_all[cat] = _generate(model, cat, n, steps, guidance)
        t_gen += time.perf_counter() - t
        d_rr = chamfer_matrix(ref, ref)
        e_rr = None
        if emd_points:
            sub_r = subsample(ref, emd_points)
            e_rr = emd_matrix(sub_r, sub_r)
        row = {"model": compare(gen, ref, d_rr, emd_points, e_rr)}
        if baselines:
            others = [c for c in CATEGORIES if c != cat]
            base = np.stack(
                [
                    build_set(1, "heldout", categories=(others[p],), start=n + i).points[0]
                    for i, p in enumerate(rng.choice(len(others), n))
                ]
            )
            row["other_category"] = compare(base, ref, d_rr, emd_points, e_rr)
            oracle = build_set(n, "heldout", categories=(cat,), start=n).points
            row["oracle"] = compare(oracle, ref, d_rr, emd_points, e_rr)
        per_cat[cat] = row
        print(f"[{k + 1}/{len(categories)}] {cat}: {row['model']}", file=sys.stderr, flush=True)

    def mean_of(method: str) -> dict:
        keys = per_cat[categories[0]][method].keys()
        return {f"{key}_mean": round(float(np.mean([per_cat[c][method][key] for c in categories])), 2) for key in keys}

    # Speed: one shape at a time, as generate_shape makes it (the first call also loads the model: not timed).
    tags = np.zeros((1, len(model.tags)), np.float32)
    one = lambda s: normalize_cloud(sample_points(model, [0], tags, 2048, [s], steps, guidance)[0])  # noqa: E731
    one(0)
    sample_s = _median_time(lambda: one(1))
    mesh_times, closed, normals = [], [], {"model": [], "oracle": []}
    for cat in categories:
        ref, ref_meshes = refs[cat], {}
        for cloud in gen_all[cat][:meshes_per_category]:
            t = time.perf_counter()
            try:
                mesh = points_to_mesh(cloud)
            except Exception as exc:  # a failure counts as not watertight, and is reported
                closed.append(False)
                print(f"points_to_mesh failed on a {cat}: {exc}", file=sys.stderr)
                continue
            finally:
                mesh_times.append(time.perf_counter() - t)
            closed.append(is_closed(mesh))
            normals["model"].append(normal_error(mesh, cloud, ref, ref_meshes))
        for cloud in build_set(meshes_per_category, "heldout", categories=(cat,), start=n).points:
            normals["oracle"].append(normal_error(points_to_mesh(cloud, unwrap=False), cloud, ref, ref_meshes))
    summary = {"model": mean_of("model")}
    if baselines:
        summary.update(other_category=mean_of("other_category"), oracle=mean_of("oracle"))
    summary.update(
        sample_s_per_shape=sample_s,
        sample_s_per_shape_batched=round(t_gen / (n * len(categories)), 3),
        mesh_s_median=round(float(np.median(mesh_times)), 3),
        mesh_s_max=round(float(np.max(mesh_times)), 3),
        normal_angle_deg={k: round(float(np.mean(v)), 2) for k, v in normals.items()},
        watertight_pct=round(100 * float(np.mean(closed)), 1),
        meshed_shapes=len(closed),
    )
    summary["targets_met"] = {
        "1nna_cd_pct_mean<=65": summary["model"]["1nna_cd_pct_mean"] <= TARGETS["1nna_cd_pct_mean"],
        "sample_s<=2": sample_s <= TARGETS["sample_s"],
        "mesh_s<=1": summary["mesh_s_median"] <= TARGETS["mesh_s"],
        "watertight_100pct": summary["watertight_pct"] >= TARGETS["watertight_pct"],
    }
    return {
        "summary": summary,
        "per_category": per_cat,
        "setup": {
            "weights": str(weights or WEIGHTS.name),
            "n_per_set": n,
            "points": 2048,
            "steps": steps,
            "guidance": guidance,
            "solver": "DPM-Solver++ 2M",
            "distance": "CD = mean squared NN distance both ways, summed; MMD-CD x1e3"
            + (f"; EMD on {emd_points}-point subsets, MMD-EMD x1e2" if emd_points else ""),
            "reference": "held-out procedural shapes (seeds >= HELDOUT_SEED0), indices 0..n-1",
            "meshing": f"points_to_mesh (UV unwrap included) on the first {meshes_per_category} clouds per category",
            "normal_angle": "surface normals of those meshes against the nearest (by CD) reference shape's, meshed "
            "alike: mean angle (unsigned, degrees) from each of 4096 surface samples to the nearest reference "
            f"sample's; oracle: {meshes_per_category} more held-out shapes per category, meshed the same way",
            "torch_threads": torch.get_num_threads(),
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=24, help="clouds per category and set")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--emd-points", type=int, default=256, help="EMD on subsets of this many points (0: no EMD)")
    p.add_argument("--weights", help="evaluate these weights instead of the shipped ones")
    p.add_argument("--categories", nargs="+", default=list(CATEGORIES))
    p.add_argument("--no-baselines", action="store_true", help="skip the other-category and oracle rows")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--update-card", action="store_true", help="store the summary in the weights' model card")
    p.add_argument("--sheet", type=Path, help="also write a contact sheet of 4 shapes per category here (PNG)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_shapes(
        args.n, args.steps, args.guidance, args.emd_points, weights=args.weights,
        categories=tuple(args.categories), baselines=not args.no_baselines,
    )  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.sheet:
        contact_sheet_of_shapes(args.sheet, args.weights)
    if args.update_card:
        card_path = Path(args.weights or WEIGHTS).with_suffix(".json")
        card = json.loads(card_path.read_text())
        command = "python scripts/eval_shapes.py " + " ".join(sys.argv[1:] if argv is None else argv)
        card["metrics"] = {"command": command.strip(), "summary": result["summary"], "setup": result["setup"]}
        card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
