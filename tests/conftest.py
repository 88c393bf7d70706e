"""Shared fixtures: real meshes (the project's test assets and trimesh primitives) and real textures."""

from __future__ import annotations

import os
from pathlib import Path

import meshdream
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MESHES = ROOT.parent / "shared" / "assets" / "meshes"
BUNDLED = Path(meshdream.__file__).parent / "assets"


def asset(name: str) -> Path:
    """A test mesh: bundled with the core, else from the shared test assets beside the checkout."""
    for folder in (BUNDLED, SHARED_MESHES):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"test mesh {name} not found in {BUNDLED} or {SHARED_MESHES}")


@pytest.fixture(scope="session")
def spot():
    return meshdream.load_mesh(asset("spot.obj"))


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data
    from skimage.transform import resize

    return resize(data.astronaut(), (1024, 1024), anti_aliasing=True).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Folder of each tiny random-weight pipeline kind (tests/tiny_models.py), built once per test session."""
    from tests.tiny_models import build

    root = tmp_path_factory.mktemp("tiny_models")
    cache = {}

    def get(kind: str, seed: int = 0):
        if (kind, seed) not in cache:
            cache[(kind, seed)] = build(root / f"{kind}_{seed}", kind, seed=seed)
        return cache[(kind, seed)]

    return get


def blender_env(**extra: str) -> dict:
    """Environment for the Blender program. A distribution's Blender (Debian's 3.4) takes its Python home from the
    first `python3.11` on PATH; with a pyenv or venv Python first (as under `python build.py test` in CI) it loses
    the system's site-packages, numpy included, so the system's bin folder goes first."""
    return {**os.environ, "PATH": os.pathsep.join(["/usr/bin", os.environ.get("PATH", "")]), **extra}


def khronos_issues(path: Path) -> dict:
    """The Khronos glTF validator's issues for a .glb ({"numErrors", "numWarnings", "messages", ...}); skips the
    test where node or the validator package is missing (python build.py setup installs it when npm exists)."""
    import json
    import shutil
    import subprocess

    modules = ROOT / ".venv" / "node" / "node_modules"
    if not shutil.which("node") or not (modules / "gltf-validator").exists():
        pytest.skip("node or the gltf-validator package is missing (python build.py setup installs it when npm exists)")
    proc = subprocess.run(
        ["node", str(ROOT / "tests" / "tools" / "validate_gltf.js"), str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(modules)},
        check=True,
    )
    return json.loads(proc.stdout)
