#!/usr/bin/env python3
"""`python build.py bench gpu`: every MeshDream feature once on CUDA, then the full-size timing and memory run.

Part 1 runs each public feature with the tiny random pipelines (tests/tiny_models.py): the texturing strategies,
the other model families, UV inpainting with a model, refine_scale, seamless tiles, LoRA, IP-Adapter, the built-in
model, shape sampling (built-in and a tiny Shap-E) and a few steps of both training scripts; each is recorded as ok
or as its error.
Part 2 times the full-size SD 1.5 + depth ControlNet architecture (random weights: speed and memory do not depend
on them), saved to a diffusers folder and loaded with load_generator as a user would: the plain diffusers
pipeline on the same depth images, then texture_mesh per strategy, then sync with LCM at 4 steps against the
plain pipeline with LCMScheduler at 4 steps (issue 29), then the peak GPU memory of the sync job per
memory preset under the caps of the cards users have. Targets are printed next to the figures (issue 19). Then
the full-size Shap-E architecture (random weights) is timed per shape.

Prints one JSON object. Exits non-zero, with a one-line JSON error on stderr, when CUDA is absent or anything
raised (a feature, a timing run, an out-of-memory under a preset's cap); a missed target is reported, not an error.
`--device-double` runs part 1 without a GPU, on the CI stand-in accelerator (tests/device_double.py), so the
script itself can be checked on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import meshdream
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # tests.tiny_models, tests.device_double; the training scripts

SPOT = Path(meshdream.__file__).parent / "assets" / "spot.obj"
TINY_JOB = dict(n_views=2, view_resolution=64, texture_size=64, steps=3)
FULL_JOB = dict(n_views=8, view_resolution=512, texture_size=1024, steps=20, guidance=7.5)
LCM_JOB = dict(FULL_JOB, steps=4, guidance=1.0)  # an LCM-LoRA's settings (issue 29)
GIB = 2**30
CAPS_GB = {"none": None, "low": 8, "minimal": 4}  # the process's GPU memory cap per preset (issue 19)
# "minimal" turns CUDA graphs off (they keep their activations' memory through the loop); measured in a process of
# its own it peaked at 3.31 GB of 4 and ran 2.14x "none": these runs say whether graphs or bigger chunks fit there.
VARIANTS = {"minimal+graphs": ("minimal", {"cuda_graphs": True}), "minimal+batch4": ("minimal", {"max_batch": 4})}
TARGETS = {"sync_x_plain": 1.25, "geometry_pct": 10, "sequential_x_plain": 3.0, "preset_slowdown": 2.0}


def fail(message: str, **details) -> None:
    raise SystemExit(json.dumps({"error": message, **details}))


def error_record(exc: BaseException) -> dict:
    """The error and the innermost frame of our own code it came through (where to look first)."""
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if "meshdream" in f.filename or "scripts" in f.filename]
    where = ours[-1] if ours else traceback.extract_tb(exc.__traceback__)[-1]
    return {"error": f"{type(exc).__name__}: {exc}"[:600], "where": f"{where.filename}:{where.lineno}"}


# --------------------------------------------------------------------------------------------- part 1: features
SHAPE_ARGS = ("--ae-steps", "3", "--ae-batch", "4", "--steps", "3", "--batch", "16", "--per-category", "1")
TEXTURE_ARGS = (
    *("--steps", "3", "--batch", "2", "--textures", "2", "--views", "1", "--resolution", "32", "--crop", "16"),
    *("--channels", "16", "32"),
)


def features(double: bool) -> dict:
    """Each feature once on the device (CUDA, or the stand-in): {name: {ok, load_s, run_s} or {ok, error, where}}.
    With the stand-in, models load on the CPU and move there (diffusers' loading itself uses the real meta device)."""
    from meshdream.generators.builtin import load_builtin
    from meshdream.shapes.sampler import load_shape_model, sample_points

    from tests.tiny_models import build, build_ip_adapter, build_shap_e

    if double:
        from tests.device_double import other_device
    device = "meta" if double else "cuda"
    tmp = Path(tempfile.mkdtemp(prefix="meshdream_bench_gpu_"))
    sd15, sdxl, sd2_depth, sd_inpaint = (
        build(tmp / k, k) for k in ("sd15_controlnet", "sdxl_controlnet", "sd2_depth", "sd_inpaint")
    )
    spot = meshdream.load_mesh(SPOT)
    red = np.zeros((48, 48, 3), np.float32)
    red[..., 0] = 1

    def load(spec, **kw):
        return lambda: meshdream.load_generator(spec, device="cpu" if double else device, **kw)

    def texture(strategy="sync", **kw):
        job = {**TINY_JOB, **kw}
        return lambda gen: meshdream.texture_mesh(spot, "red brick", gen, strategy=strategy, **job).texture

    def inpaint(gen):
        holes = np.zeros((64, 64), bool)
        holes[16:40, 16:40] = True
        return meshdream.inpaint_uv(spot, np.full((64, 64, 3), 0.5, np.float32), holes, gen, "moss", steps=3)

    def train(script: str, *argv: str) -> None:
        with contextlib.redirect_stdout(sys.stderr):  # its progress log; stdout carries the JSON
            importlib.import_module(script).main([*argv, "--device", device])

    def train_shapes(_):
        out = tmp / "shape_model" / "model.safetensors"
        threads = ("--threads", str(torch.get_num_threads()))  # the script sets torch's threads: keep ours
        train("train_shape_model", *SHAPE_ARGS, *threads, "--out", str(out))
        model = load_shape_model(str(out)).to(device)
        return sample_points(model, [0], np.zeros((1, len(model.tags))), 256, [0], steps=3)

    def train_textures(_):
        out = tmp / "texture_model"
        train("train_texture_model", *TEXTURE_ARGS, "--out", str(out))
        gen = load_builtin(device="cpu", weights=out / "texture_model.safetensors").to(device)
        return texture(view_resolution=32)(gen)

    def shap_e(model):
        return meshdream.generate_shape("a red chair", n_points=512, steps=3, device=device, shape_model=model)

    def rasterized_views(_):
        """The views rasterized on the device are the host ray cast's (face ids on >= 99.9 % of pixels)."""
        from meshdream.geometry.meshdata import mesh_data
        from meshdream.geometry.raster import rasterize

        triangles = torch.from_numpy(mesh_data(spot).corner_positions).to(device)
        agree = []
        for camera in meshdream.orbit_cameras(8, 512, mesh=spot):
            face = rasterize(triangles, camera)[0].cpu().numpy()
            agree.append((face == meshdream.render(spot, camera, require_visible=False).face).mean())
        if min(agree) < 0.999:
            raise AssertionError(f"rasterized face ids agree with the ray cast on only {min(agree):.4%} of pixels")
        return agree

    jobs = {
        "rasterized_views": (None, rasterized_views),
        "sync": (load(sd15), texture("sync")),
        "sequential": (load(sd15), texture("sequential")),
        "project_init_image": (load(sd15), texture("project", init_image=np.full((64, 64, 3), 0.5, np.float32))),
        "sdxl_controlnet": (load(sdxl), texture()),
        "sd2_depth": (load(sd2_depth), texture()),
        "inpaint_uv_model": (load(sd_inpaint), inpaint),
        "refine_scale_2": (load(sd15), texture(refine_scale=2)),
        "seamless_texture": (load(sd15), lambda gen: meshdream.seamless_texture("marble", gen, size=64, steps=3)),
        "lora": (lambda: load(sd15, lora=lora(sd15, tmp / "lora"))(), texture()),
        "lcm_sampler": (load(sd15, sampler="lcm"), texture(steps=4, guidance=1.0)),
        "ip_adapter": (
            lambda: load(sd15, ip_adapter=build_ip_adapter(tmp / "ip", sd15))(),
            texture(reference_image=red),
        ),
        "builtin": (load("builtin"), texture(view_resolution=32)),
        "generate_shape": (None, lambda _: meshdream.generate_shape("chair", n_points=512, steps=5, device=device)),
        "shap_e": (lambda: dataclasses.replace(load_shape_model(str(build_shap_e(tmp / "shap_e"))), grid=32), shap_e),
        "train_shape_model": (None, train_shapes),
        "train_texture_model": (None, train_textures),
    }
    out = {}
    for name, (loader, run) in jobs.items():
        t = time.perf_counter()
        try:
            gen = loader() if loader else None
            t_load = time.perf_counter() - t
            with other_device() if double else contextlib.nullcontext(), warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                result = run(gen.to(device) if double and gen is not None else gen)
            graph_failures = [str(w.message) for w in seen if "CUDA graph" in str(w.message)]
            if graph_failures:  # every model family must replay its denoiser as a CUDA graph
                raise RuntimeError(graph_failures[0])
            if not np.isfinite(np.asarray(result, np.float32)).all():
                raise ValueError(f"non-finite values in the result of {name}")
            out[name] = {"ok": True, "load_s": round(t_load, 2), "run_s": round(time.perf_counter() - t - t_load, 2)}
        except Exception as exc:  # one feature's failure is a result; the others still run
            out[name] = {"ok": False, **error_record(exc), "seconds": round(time.perf_counter() - t, 2)}
    return out


def lora(pipeline: Path, folder: Path) -> Path:
    """A random LoRA for the tiny SD 1.5 UNet, saved as diffusers saves one."""
    import diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(3)
    unet = diffusers.UNet2DConditionModel.from_pretrained(pipeline, subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"]))
    diffusers.StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder


# --------------------------------------------------------------------------------------------- part 2: full size
def sd15_components(folder: Path, device: str = "cuda") -> dict:
    """The SD 1.5 architecture (UNet, VAE, CLIP text encoder) and a depth ControlNet from that UNet, with random
    weights, built on `device` (initializing 1.4 B parameters on a GPU takes a second, on a CPU minutes)."""
    import diffusers
    import transformers

    from tests.tiny_models import scheduler, tokenizer

    tok = tokenizer(folder / "tokenizer_src")
    with torch.device(device):
        unet = diffusers.UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8, sample_size=64)
        networks = dict(
            unet=unet,
            controlnet=diffusers.ControlNetModel.from_unet(unet),
            vae=diffusers.AutoencoderKL(
                block_out_channels=(128, 256, 512, 512),
                layers_per_block=2,
                latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                sample_size=512,
            ),
            text_encoder=transformers.CLIPTextModel(
                transformers.CLIPTextConfig(
                    vocab_size=len(tok),
                    hidden_size=768,
                    intermediate_size=3072,
                    num_hidden_layers=12,
                    num_attention_heads=12,
                    max_position_embeddings=77,
                    bos_token_id=len(tok) - 2,
                    eos_token_id=len(tok) - 1,
                )
            ),
        )
    return dict(networks, tokenizer=tok, scheduler=scheduler())


def save_fullsize(folder: Path) -> tuple[Path, Path]:
    """A diffusers SD 1.5 folder and a ControlNet folder, in fp16 (what a user downloads)."""
    import diffusers

    parts = sd15_components(folder)
    for name in ("unet", "controlnet", "vae", "text_encoder"):
        parts[name] = parts[name].to("cpu", torch.float16)
    controlnet = parts.pop("controlnet")
    controlnet.save_pretrained(folder / "controlnet")
    diffusers.StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(folder / "sd15")
    return folder / "sd15", folder / "controlnet"


def seconds(fn):
    """(fn(), wall seconds); every timed call returns host arrays, so the GPU work is finished when it returns."""
    t = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t, 3)


def plain_pipeline(gen, mesh, job: dict = FULL_JOB) -> tuple[float, float]:
    """(cold, warm) seconds of diffusers' own StableDiffusionControlNetPipeline (with `gen`'s scheduler) on the depth
    images and prompts texture_mesh would use: the floor for synchronized texturing, which adds the 3D work to
    exactly this."""
    import diffusers
    from meshdream.texturing.views import LIGHTING_NEGATIVE, prepare_views

    views = prepare_views(
        mesh, meshdream.orbit_cameras(job["n_views"], resolution=job["view_resolution"], mesh=mesh), "red brick"
    )
    p = gen.parts
    pipe = diffusers.StableDiffusionControlNetPipeline(
        vae=p.vae,
        text_encoder=p.text_encoder,
        tokenizer=p.tokenizer,
        unet=p.unet,
        controlnet=p.controlnet,
        scheduler=p.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    kw = dict(
        prompt=views.prompts,
        negative_prompt=[LIGHTING_NEGATIVE] * len(views.prompts),
        image=views.depth.repeat(1, 3, 1, 1).to(gen.device, gen.dtype),
        num_inference_steps=job["steps"],
        guidance_scale=job["guidance"],
        output_type="np",
    )
    return seconds(lambda: pipe(**kw))[1], seconds(lambda: pipe(**kw))[1]


def fewstep_run(gen, job: dict) -> dict:
    """Synchronized texturing with a few-step sampler (`gen` loaded with sampler=...) against diffusers' own
    ControlNet pipeline with the same scheduler, steps and guidance on the same depth images (issue 29)."""
    cold_plain, plain = plain_pipeline(gen, meshdream.load_mesh(SPOT), job)
    cold = strategy_run(gen, "sync", job)["wall_s"]
    sync = strategy_run(gen, "sync", job)
    return {
        "sampler": gen.sampler,
        "plain_cold_s": cold_plain,
        "plain_s": plain,
        "sync": {**sync, "cold_s": cold},
        "x_plain": round(sync["wall_s"] / plain, 2),
    }


def strategy_run(gen, strategy: str, job: dict = FULL_JOB) -> dict:
    """One texture_mesh call on a freshly loaded mesh (its UV maps and ray-cast scene are built in the call, as
    for a user's new mesh)."""
    mesh = meshdream.load_mesh(SPOT)
    job = {k: v for k, v in job.items() if strategy != "project" or k != "n_views"}
    result, wall = seconds(lambda: meshdream.texture_mesh(mesh, "red brick", gen, strategy=strategy, **job))
    return {"wall_s": wall, "timings": {k: round(v, 3) for k, v in result.timings.items()}}


def graphs_check(gen) -> dict:
    """The denoiser as CUDA graphs (the default) against eager calls, at the small batches graphs are for:
    wall seconds of each and the largest texture difference (same seed: the same kernels, so ~0)."""
    out = {}
    for strategy in ("project", "sequential"):
        textures = {}
        for graphs in (False, True):
            gen.cuda_graphs = graphs
            mesh = meshdream.load_mesh(SPOT)
            job = {k: v for k, v in FULL_JOB.items() if strategy != "project" or k != "n_views"}
            with warnings.catch_warnings():
                warnings.simplefilter("error", meshdream.MeshDreamWarning)  # a failed capture fails the check
                result, wall = seconds(lambda: meshdream.texture_mesh(mesh, "red brick", gen, strategy=strategy, **job))
            textures[graphs] = result.texture.astype(np.float32)
            out[f"{strategy}_{'graphs' if graphs else 'eager'}_s"] = wall
        out[f"{strategy}_max_abs_diff"] = round(float(np.abs(textures[True] - textures[False]).max()), 4)
    gen.cuda_graphs = True
    return out


def release() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def preset_child(folders: tuple[Path, Path], name: str) -> dict:
    """preset_run in a process of its own: a user's process holds one model, and nothing an earlier run left on the
    GPU counts against the cap (see `leftover` in the output)."""
    cmd = [sys.executable, __file__, "--preset", name, str(folders[0]), str(folders[1])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": f"child exited {proc.returncode}: {proc.stderr[-600:]}"}
    return json.loads(lines[-1])


def leftover() -> dict:
    """What is still allocated on the GPU once every generator is dropped, and the largest live CUDA tensors."""
    release()
    live = [o for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.is_cuda]
    live.sort(key=lambda t: -t.numel() * t.element_size())
    return {
        "allocated_gb": round(torch.cuda.memory_allocated() / GIB, 3),
        "largest_live": [f"{tuple(t.shape)} {t.dtype}" for t in live[:6]],
        "live_tensors_gb": round(sum(t.numel() * t.element_size() for t in live) / GIB, 3),
    }


def preset_run(folders: tuple[Path, Path], name: str) -> dict:
    """Peak GPU memory (loading and both calls included) and wall time of the sync job (its second call: the first
    is the warm-up) with a fresh generator loaded under preset `name` (or a VARIANTS entry), the process capped at
    its CAPS_GB (the cap covers the weights too, as a card of that size does)."""
    preset, overrides = VARIANTS.get(name, (name, {}))
    cap = CAPS_GB[preset]
    total = torch.cuda.get_device_properties(0).total_memory
    release()
    torch.cuda.set_per_process_memory_fraction(1.0 if cap is None else cap * GIB / total)
    torch.cuda.reset_peak_memory_stats()
    try:
        gen, load_s = seconds(lambda: meshdream.load_generator(folders[0], controlnet=folders[1], memory=preset))
        for attr, value in overrides.items():
            setattr(gen, attr, value)
        cold = strategy_run(gen, "sync")["wall_s"]
        run = strategy_run(gen, "sync")
        peak = round(torch.cuda.max_memory_allocated() / GIB, 2)
        return {"cap_gb": cap, "load_s": load_s, "peak_gb": peak, "cold_s": cold, **run}
    except Exception as exc:  # an out-of-memory error under the cap is this preset's result
        return {"cap_gb": cap, **error_record(exc)}
    finally:
        gen = None
        release()
        torch.cuda.set_per_process_memory_fraction(1.0)


def fullsize(out: dict) -> None:
    """The issue-19 timing run into `out` (filled as it goes, so a failure keeps what was measured): spot.obj,
    8 views at 512 px, 20 steps, guidance 7.5, 1024² texture, fp16."""
    out["setup"] = (
        "full-size SD 1.5 + depth ControlNet, random weights, saved and loaded with load_generator; "
        f"spot.obj, {FULL_JOB}; times warm (each strategy's and preset's first call is its warm-up, cold_s)"
    )
    folders, out["build_save_s"] = seconds(lambda: save_fullsize(Path(tempfile.mkdtemp(prefix="meshdream_sd15_"))))
    gen, out["load_s"] = seconds(lambda: meshdream.load_generator(folders[0], controlnet=folders[1], memory="none"))
    out["dtype"] = str(gen.dtype)
    out["plain_cold_s"], out["plain_s"] = plain_pipeline(gen, meshdream.load_mesh(SPOT))
    for strategy in ("sync", "sequential", "project"):
        # The first call of a strategy meets new batch shapes (kernels loaded lazily, graphs captured): its warm-up.
        cold = strategy_run(gen, strategy)["wall_s"]
        out[strategy] = {**strategy_run(gen, strategy), "cold_s": cold}
        out[strategy]["x_plain"] = round(out[strategy]["wall_s"] / out["plain_s"], 2)
    out["graphs"] = graphs_check(gen)
    gen = None
    lcm, out["lcm_load_s"] = seconds(
        lambda: meshdream.load_generator(folders[0], controlnet=folders[1], memory="none", sampler="lcm")
    )
    out["lcm"] = fewstep_run(lcm, LCM_JOB)
    lcm = None
    geometry = out["sync"]["timings"].get("geometry", 0.0)
    out["sync"]["geometry_pct"] = round(100 * geometry / out["sync"]["wall_s"], 1)
    out["leftover"] = leftover()  # every generator dropped: their weights would count against the capped runs
    out["memory"] = {name: preset_child(folders, name) for name in [*CAPS_GB, *VARIANTS]}


def save_shap_e_fullsize(folder: Path) -> Path:
    """openai/shap-e's architecture with random weights, built on the GPU and saved in fp16: the prior and the
    renderer at their default (full) configs but for the prior's Shap-E settings, a CLIP ViT-L/14 text encoder."""
    import diffusers
    import transformers
    from diffusers.pipelines.shap_e import ShapERenderer

    from tests.tiny_models import tokenizer

    tok = tokenizer(folder / "tokenizer_src")
    with torch.device("cuda"):
        parts = dict(
            prior=diffusers.PriorTransformer(
                num_attention_heads=16,
                attention_head_dim=64,
                num_layers=24,
                embedding_dim=1024,
                num_embeddings=1024,
                additional_embeddings=0,
                time_embed_act_fn="gelu",
                norm_in_type="layer",
                encoder_hid_proj_type=None,
                added_emb_type=None,
                time_embed_dim=4096,
                embedding_proj_dim=768,
                clip_embed_dim=2048,
            ),
            shap_e_renderer=ShapERenderer(),
            text_encoder=transformers.CLIPTextModelWithProjection(
                transformers.CLIPTextConfig(
                    vocab_size=len(tok),
                    hidden_size=768,
                    intermediate_size=3072,
                    num_hidden_layers=12,
                    num_attention_heads=12,
                    max_position_embeddings=77,
                    projection_dim=768,
                    bos_token_id=len(tok) - 2,
                    eos_token_id=len(tok) - 1,
                )
            ),
        )
    parts = {k: v.to("cpu", torch.float16) for k, v in parts.items()}
    scheduler = diffusers.HeunDiscreteScheduler(
        beta_schedule="exp",
        num_train_timesteps=1024,
        prediction_type="sample",
        use_karras_sigmas=True,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    diffusers.ShapEPipeline(**parts, tokenizer=tok, scheduler=scheduler).save_pretrained(folder / "shap_e")
    return folder / "shap_e"


def shap_e_timing(out: dict) -> None:
    """Seconds per Shap-E shape into `out`: the full-size architecture (random weights: speed does not depend on
    them) loaded with load_shape_model as a cached openai/shap-e would be, at its defaults (64 Heun steps, guidance
    15, a 128³ field). `field_s` is the GPU part (prior + field); `mesh_s` the whole `.mesh` with the CPU clean-up,
    which random weights' noisy surface may make slow or leave without a solid (then `mesh` says so)."""
    from meshdream.errors import InvalidMeshError
    from meshdream.shapes import load_shape_model

    folder, out["build_save_s"] = seconds(lambda: save_shap_e_fullsize(Path(tempfile.mkdtemp(prefix="meshdream_se_"))))
    model, out["load_s"] = seconds(lambda: load_shape_model(str(folder)).to("cuda"))
    torch.cuda.reset_peak_memory_stats()
    _, out["field_cold_s"] = seconds(lambda: model.sdf_field("a chair", seed=0))
    _, out["field_s"] = seconds(lambda: model.sdf_field("a chair", seed=1))
    out["peak_gb"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
    try:
        mesh, out["mesh_s"] = seconds(lambda: model.mesh("a chair", seed=1))
        out["faces"], out["remeshed"] = len(mesh.faces), mesh.metadata["finish_mesh"]["remeshed"]
    except InvalidMeshError as exc:
        out["mesh"] = f"not timed: {exc}"
    load_shape_model.cache_clear()
    release()


def targets(full: dict) -> list[dict]:
    """Each issue-19 target with the measured figure (None where its run failed) and whether it is met."""

    def row(what, value, limit):
        return {"target": what, "value": value, "met": value is not None and value <= limit}

    mem = full.get("memory", {})
    base = mem.get("none", {}).get("wall_s")
    rows = [
        row(f"sync <= {TARGETS['sync_x_plain']}x plain", full.get("sync", {}).get("x_plain"), TARGETS["sync_x_plain"]),
        row(
            f"sync geometry <= {TARGETS['geometry_pct']}% of wall",
            full.get("sync", {}).get("geometry_pct"),
            TARGETS["geometry_pct"],
        ),
        row(
            f"sequential <= {TARGETS['sequential_x_plain']}x plain",
            full.get("sequential", {}).get("x_plain"),
            TARGETS["sequential_x_plain"],
        ),
    ]
    for preset in ("low", "minimal"):
        got = mem.get(preset, {})
        rows.append(row(f'memory="{preset}" peak <= {CAPS_GB[preset]} GB', got.get("peak_gb"), CAPS_GB[preset]))
        slow = round(got["wall_s"] / base, 2) if base and "wall_s" in got else None
        rows.append(
            row(
                f'memory="{preset}" <= {TARGETS["preset_slowdown"]}x slower than "none"',
                slow,
                TARGETS["preset_slowdown"],
            )
        )
    return rows


def errors(result: dict) -> list[str]:
    found = [f"features.{k}" for k, v in result.get("features", {}).items() if not v["ok"]]
    full = result.get("fullsize", {})
    found += ["shap_e"] * ("error" in result.get("shap_e", {}))
    found += ["fullsize"] * ("error" in full) + [
        f"memory.{k}" for k, v in full.get("memory", {}).items() if "error" in v and k not in VARIANTS
    ]  # a variant is an experiment: its out-of-memory error is its result
    return found


def run(double: bool = False) -> dict:
    """Both parts on CUDA (part 1 only with the stand-in device); prints the result and exits non-zero on errors."""
    if not double and not torch.cuda.is_available():
        fail("CUDA is not available: `bench gpu` needs an NVIDIA GPU (use --device-double for a CPU smoke check).")
    result = {
        "device": "device double (CPU)" if double else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "features": features(double),
    }
    if not double:
        result["fullsize"] = {}
        try:
            fullsize(result["fullsize"])
        except Exception as exc:
            result["fullsize"].update(error_record(exc))
        result["targets"] = targets(result["fullsize"])
        result["shap_e"] = {}
        try:
            shap_e_timing(result["shap_e"])
        except Exception as exc:
            result["shap_e"].update(error_record(exc))
    if errors(result):
        print(json.dumps(result, indent=2), flush=True)
        fail(f"{len(errors(result))} part(s) failed", failed=errors(result))
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device-double", action="store_true", help="part 1 only, on the CPU stand-in device")
    p.add_argument("--preset", help=argparse.SUPPRESS)  # the child of preset_child: --preset NAME FOLDER CONTROLNET
    p.add_argument("folders", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.preset:
        print(json.dumps(preset_run(tuple(args.folders), args.preset)))
        return
    print(json.dumps(run(args.device_double), indent=2))


if __name__ == "__main__":
    main()
