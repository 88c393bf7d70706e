#!/usr/bin/env python3
"""`python build.py bench restyle`: restyle keeps a texture's structure while its style moves to the prompt (issues 17,
25).

Protocol. Each case starts from a procedural material of family A (materials.py, its default colour) wrapped
around the mesh the way the built-in model's training renders wrap it (dataset.triplanar at the training tile
scale), written into the mesh's UV texels: a texture whose family is known. restyle_texture (built-in model, its
own defaults: 8 views, 128 px, 8 UniPC steps) restyles it toward the bare prompt of another family B, B = the family six
places on in FAMILIES (so every family is a target once and every source differs from it in colour or pattern).
Meshes alternate between the bundled spot and suzanne; the seed is the case number. Every case is judged on six
views that restyle never saw (elevation 25 deg, other azimuths), rendered on white and averaged from twice the
resolution, as the judges' training renders are:
(a) structure: SSIM between the Sobel magnitudes of luminance before and after, averaged over the object's pixels
    away from the silhouette (whose edge against the white background moves with the object's brightness),
    per case; mean and min over the cases (target at strength 0.5, the default: >= 0.55). The same on the UV
    texels away from chart borders (at the texture's full detail, which 128 px views cannot carry); strength 0 (no
    denoising) is the ceiling of both.
(b) style: the colour-aware material classifier of scripts/eval_texture_model.py (its cached judges, its centre
    crop) on those views, the share classified as B (target at strength 0.5: >= 60 %), against the same on the
    un-restyled inputs (the baseline: they show A); the colour-blind structure judge's share as well (pattern
    alone, colour removed).
(c) seconds per restyle, with the machine's load average (other work on the cores slows it).
Strength 0.5 (the default) runs every case; 0 (no denoising) and 0.3 run the first few. Issue 25 restated the
target at 0.5 (issue 17 asked both at 0.3, which no strength of the built-in model meets: 0.61 / 9.7 %).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import sobel
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import meshdream  # noqa: E402
from bench import interior  # noqa: E402
from eval_texture_model import LUMA, classify, judge_input, judges  # noqa: E402
from meshdream.generators.builtin import WEIGHTS  # noqa: E402
from meshdream.generators.builtin.dataset import TILE_WORLD, triplanar  # noqa: E402
from meshdream.generators.builtin.materials import DEFAULT_COLOUR, FAMILIES, material  # noqa: E402
from meshdream.texturing.restyle import antialiased_renders  # noqa: E402

MESHES = ("spot.obj", "suzanne.obj")
SIZE = 512  # the built-in model's default texture size
JOB = dict(n_views=8, view_resolution=128, steps=20)  # its card's defaults
EVAL_VIEWS = dict(n=6, resolution=128, elevations=[25.0] * 6)
TARGET_STRENGTH = 0.5
TARGETS = {"structure_ssim_at_0.5": 0.55, "classifier_accuracy_at_0.5": 0.6}  # over all cases (issue 25)
STRENGTHS = {0.0: 3, 0.3: 4, TARGET_STRENGTH: len(FAMILIES)}  # strength: cases run (the first ones)


def procedural_texture(mesh, family: str, seed: int) -> np.ndarray:
    """(SIZE, SIZE, 3) texture showing `family` in its default colour, triplanar in world space (one tile per
    mean training tile size), gutters padded from the nearest covered texel."""
    rng = np.random.default_rng(seed)
    image = material(family, DEFAULT_COLOUR[family], 256, rng)
    maps = meshdream.uv_maps(mesh, SIZE)
    on = maps.coverage.ravel()
    out = np.ones((SIZE * SIZE, 3), np.float32)
    position, normal = maps.position.reshape(-1, 3)[on], maps.normal.reshape(-1, 3)[on]
    out[on] = triplanar(image, position / np.mean(TILE_WORLD) + rng.random(3), normal)
    texels, source, _ = maps.gutter
    out[texels] = out[source]
    return np.clip(out, 0, 1).reshape(SIZE, SIZE, 3)


def edge_ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """SSIM of the luminance Sobel magnitudes of RGB images a and b, averaged over the pixels `where`."""
    ea, eb = (sobel(x @ np.asarray(LUMA, np.float32)) for x in (a, b))
    _, full = structural_similarity(ea, eb, data_range=max(ea.max(), eb.max(), 1e-6), full=True)
    return float(full[where].mean())


class Case:
    """One mesh, source texture and its evaluation views (renders, masks) before any restyle."""

    def __init__(self, k: int):
        self.k = k
        self.name = MESHES[k % len(MESHES)]
        self.mesh = meshdream.load_mesh(meshdream.__path__[0] + "/assets/" + self.name)
        self.source_family = FAMILIES[(k + 6) % len(FAMILIES)]
        self.target = k % len(FAMILIES)
        self.texture = procedural_texture(self.mesh, self.source_family, k)
        self.cams = meshdream.orbit_cameras(mesh=self.mesh, **EVAL_VIEWS)
        self.maps = [meshdream.render(self.mesh, c) for c in self.cams]
        self.masks = np.stack([m.mask for m in self.maps])
        self.inner = ndimage.binary_erosion(self.masks, np.ones((1, 5, 5)))  # 2 px off the silhouette
        self.texels = interior(meshdream.uv_maps(self.mesh, SIZE).chart)
        self.before = self.views(self.texture)

    def views(self, texture: np.ndarray) -> np.ndarray:
        return antialiased_renders(self.mesh, texture, self.cams, self.maps)

    def structure(self, texture: np.ndarray, views: np.ndarray) -> tuple[float, float]:
        """(view-space, texel-space) edge SSIM of `texture` (and its eval `views`) against the source."""
        on_views = float(np.mean([edge_ssim(a, b, m) for a, b, m in zip(self.before, views, self.inner)]))
        return on_views, edge_ssim(self.texture, texture, self.texels)


def judged(judge, views: list[np.ndarray], masks: list[np.ndarray], colour_blind: bool) -> np.ndarray:
    images = torch.from_numpy(np.concatenate(views)).permute(0, 3, 1, 2).float()
    mask = torch.from_numpy(np.concatenate(masks))[:, None].float()
    return classify(judge, judge_input(images, mask, colour_blind)).numpy()


def run(strengths: dict = STRENGTHS) -> dict:
    j = judges(2000, "cpu")  # the cached judges of scripts/eval_texture_model.py (trained there if missing)
    gen = meshdream.load_generator("builtin")
    cases = [Case(k) for k in range(max(strengths.values()))]
    result = {
        "protocol": "procedural family A on spot/suzanne -> restyle to bare prompt of family B (6 on); built-in "
        f"model {JOB}, {SIZE}² texture; judged on {EVAL_VIEWS['n']} unseen views",
        "targets": TARGETS,
        "judges_heldout_accuracy": j["heldout_accuracy"],
        # The weights change as the model is retrained: figures are comparable only for the same file.
        "model_weights_sha256": hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()[:12],
        "model_guidance": gen.default_guidance,
    }

    def style(views, chosen) -> dict:
        labels = np.concatenate([np.full(len(v), c.target) for v, c in zip(views, chosen)])
        masks = [c.masks for c in chosen]
        return {
            "classifier_accuracy": round(float((judged(j["colour"], views, masks, False) == labels).mean()), 3),
            "colour_blind_accuracy": round(float((judged(j["structure"], views, masks, True) == labels).mean()), 3),
        }

    result["before"] = style([c.before for c in cases], cases)
    # The judge's sanity check: the inputs are seen as their own family A.
    source = np.concatenate([np.full(len(c.before), FAMILIES.index(c.source_family)) for c in cases])
    seen_as = judged(j["colour"], [c.before for c in cases], [c.masks for c in cases], False)
    result["before"]["classifier_accuracy_on_source_family"] = round(float((seen_as == source).mean()), 3)
    for strength, n in sorted(strengths.items()):
        chosen, views, ssim_v, ssim_t, seconds = cases[:n], [], [], [], []
        for c in chosen:
            t = time.perf_counter()
            r = meshdream.restyle_texture(
                c.mesh, c.texture, FAMILIES[c.target], strength, generator=gen, seed=c.k, **JOB
            )
            seconds.append(time.perf_counter() - t)
            views.append(c.views(r.texture))
            on_views, on_texels = c.structure(r.texture, views[-1])
            ssim_v.append(on_views)
            ssim_t.append(on_texels)
        result[f"strength_{strength}"] = {
            "cases": n,
            "structure_ssim_views": {"mean": round(float(np.mean(ssim_v)), 3), "min": round(float(np.min(ssim_v)), 3)},
            "structure_ssim_texels": {"mean": round(float(np.mean(ssim_t)), 3), "min": round(float(np.min(ssim_t)), 3)},
            **style(views, chosen),
            "baseline_on_these_inputs": style([c.before for c in chosen], chosen),
            "s_per_restyle": round(float(np.mean(seconds)), 1),
            "per_case": [
                {
                    "mesh": c.name,
                    "from": c.source_family,
                    "to": FAMILIES[c.target],
                    "ssim_views": round(v, 3),
                }
                for c, v in zip(chosen, ssim_v)
            ],
        }
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    at = result.get(f"strength_{TARGET_STRENGTH}")
    if at and at["cases"] == len(FAMILIES):  # the target holds over every case, not a first few
        result["target_met"] = {
            "structure": at["structure_ssim_views"]["mean"] >= TARGETS["structure_ssim_at_0.5"],
            "classifier": at["classifier_accuracy"] >= TARGETS["classifier_accuracy_at_0.5"],
        }
    return result


if __name__ == "__main__":
    # e.g. `bench_restyle.py 0:2 0.3:4` runs strength 0 on 2 cases and 0.3 on 4 (a quick look)
    args = dict(a.split(":") for a in sys.argv[1:])
    print(json.dumps(run({float(s): int(n) for s, n in args.items()} or STRENGTHS), indent=2))
