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
from meshdream.shapes import is_closed, points_to_mesh
from meshdream.shapes.metrics import chamfer_matrix, compare, emd_matrix, subsample
from meshdream.shapes.procedural import CATEGORIES, build_set, normalize_cloud
from meshdream.shapes.sampler import WEIGHTS, load_shape_model, sample_points

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
    per_cat, gen_all, t_gen = {}, {}, 0.0
    for k, cat in enumerate(categories):
        ref = build_set(n, "heldout", categories=(cat,)).points
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
    mesh_times, closed = [], []
    for cat in categories:
        for cloud in gen_all[cat][:meshes_per_category]:
            t = time.perf_counter()
            try:
                closed.append(is_closed(points_to_mesh(cloud)))
            except Exception as exc:  # a failure counts as not watertight, and is reported
                closed.append(False)
                print(f"points_to_mesh failed on a {cat}: {exc}", file=sys.stderr)
            mesh_times.append(time.perf_counter() - t)
    summary = {"model": mean_of("model")}
    if baselines:
        summary.update(other_category=mean_of("other_category"), oracle=mean_of("oracle"))
    summary.update(
        sample_s_per_shape=sample_s,
        sample_s_per_shape_batched=round(t_gen / (n * len(categories)), 3),
        mesh_s_median=round(float(np.median(mesh_times)), 3),
        mesh_s_max=round(float(np.max(mesh_times)), 3),
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
    if args.update_card:
        card_path = Path(args.weights or WEIGHTS).with_suffix(".json")
        card = json.loads(card_path.read_text())
        command = "python scripts/eval_shapes.py " + " ".join(sys.argv[1:] if argv is None else argv)
        card["metrics"] = {"command": command.strip(), "summary": result["summary"], "setup": result["setup"]}
        card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
