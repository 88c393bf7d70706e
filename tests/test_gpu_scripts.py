"""The scripts that must run on a GPU, checked without one: the texture-model training script on the device double
(tests/device_double.py) and `bench gpu`'s refusal on a machine without CUDA."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import meshdream
import numpy as np
import pytest
import torch
from meshdream.generators.builtin import load_builtin
from safetensors.torch import load_file

from tests.device_double import other_device

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_texture_training_script_trains_on_the_given_device(tmp_path, spot):
    """`--device` (cuda for users; the device double here): renders, both networks, noise, timesteps, masks and
    the loss weights reach the device, a seed trains the same weights as on the CPU, and they load and texture."""
    script = _script("train_texture_model")
    args = ["--steps", "3", "--batch", "2", "--textures", "2", "--views", "1", "--resolution", "32", "--crop", "16"]
    args += ["--channels", "16", "32", "--threads", "1"]
    script.main([*args, "--out", str(tmp_path / "cpu")])
    with other_device() as dev:
        script.main([*args, "--device", str(dev), "--out", str(tmp_path / "dev")])
    cpu, dev = (load_file(str(tmp_path / d / "texture_model.safetensors")) for d in ("cpu", "dev"))
    assert cpu.keys() == dev.keys()
    for key in cpu:  # stored as float16: equal float32 weights may still round one float16 step (2**-10) apart
        torch.testing.assert_close(dev[key], cpu[key], atol=1e-4, rtol=2**-10, msg=key)
    card = json.loads((tmp_path / "dev" / "texture_model.json").read_text())
    assert card["training"]["steps"] == 3 and card["training"]["command"].endswith(
        "--device meta --out " + str(tmp_path / "dev")
    )
    gen = load_builtin(device="cpu", weights=tmp_path / "dev" / "texture_model.safetensors")
    texture = meshdream.texture_mesh(spot, "red brick", gen, n_views=1, view_resolution=32, texture_size=64, steps=2)
    assert np.isfinite(texture.texture).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_gpu_refuses_without_cuda():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "gpu"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "CUDA" in json.loads(proc.stderr.strip().splitlines()[-1])["error"]


def test_bench_gpu_times_a_few_step_sampler_against_diffusers_pipeline(tiny):
    """Part 2's LCM comparison (sync against StableDiffusionControlNetPipeline with LCMScheduler, same steps), run
    here at tiny size on the CPU: the code path the GPU run takes."""
    script = _script("bench_gpu")
    gen = meshdream.load_generator(tiny("sd15_controlnet"), sampler="lcm")
    job = dict(script.LCM_JOB, n_views=2, view_resolution=64, texture_size=64)
    out = script.fewstep_run(gen, job)
    assert out["sampler"] == "lcm" and type(gen.parts.scheduler).__name__ == "LCMScheduler"
    assert out["plain_s"] > 0 and out["sync"]["wall_s"] > 0 and out["x_plain"] > 0
