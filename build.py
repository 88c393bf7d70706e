#!/usr/bin/env python3
"""MeshDream's one entry point.

    python build.py setup          create .venv and install the core (editable) with dev/test tools, server and Ray
    python build.py demo           set up, then run the demo; results go to out/
    python build.py test [ARGS]    set up, then run pytest (ARGS are passed on)
    python build.py bench [NAME]   set up, then run benchmarks; prints JSON and writes out/bench.json
    python build.py addon          write the Blender add-on, dist/meshdream-<version>.zip, with the core's wheel

Set-up is skipped when nothing it depends on changed since the last run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
# The dev/test environment pins torch (a CPU build, taken from local disk here) and Blender-as-a-module;
# the core itself declares loose requirements.
DEV_PINS = ["torch==2.13.0"]
BLENDER_PIN = "bpy==5.0.1"  # Blender 5.0 as a Python module; only published for Python 3.11
GLTF_VALIDATOR = "gltf-validator@2.0.0-dev.3.10"  # npm package, run under node by the tests


def run(*cmd, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def setup() -> None:
    pins = list(DEV_PINS)
    if sys.version_info[:2] == (3, 11):
        pins.append(BLENDER_PIN)
    else:
        print(
            f"note: {BLENDER_PIN} needs Python 3.11 (this is {sys.version.split()[0]}); Blender tests will be skipped."
        )
    stamp_text = "\n".join(pins + [GLTF_VALIDATOR, (ROOT / "core/pyproject.toml").read_text()])
    stamp = VENV / ".meshdream-setup"
    digest = hashlib.sha256(stamp_text.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", *pins, "-e", f"{ROOT / 'core'}[dev,server,ray]")
    if shutil.which("npm"):  # the Khronos glTF validator checks our GLB files in the tests
        run("npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", VENV / "node", GLTF_VALIDATOR)
    stamp.write_text(digest)


def core_wheel(folder: Path) -> Path:
    """The core as a wheel in `folder`, built from a clean copy of core/ (a stale build/ folder must not leak
    removed files into it); with this Python's setuptools when it has one, else pip fetches it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "core"
        shutil.copytree(ROOT / "core", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        try:
            import setuptools

            isolation = [] if int(setuptools.__version__.split(".")[0]) < 68 else ["--no-build-isolation"]
        except ImportError:
            isolation = []
        run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "-w", tmp, source)
        (wheel,) = Path(tmp).glob("meshdream-*.whl")
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheel, folder / wheel.name))


def build_addon() -> Path:
    """The add-on as package `meshdream` (extension manifest + legacy bl_info), with the core's standard-library
    client copied in as `meshdream.vendor.client`, so Blender's Python needs nothing installed for the worker, and
    the core's wheel as `meshdream/core_wheel/`, which "Set up local worker" installs into its own environment."""
    source = ROOT / "blender_addon"
    version = re.search(r'^version = "([^"]+)"', (source / "blender_manifest.toml").read_text(), re.M).group(1)
    out = ROOT / "dist" / f"meshdream-{version}.zip"
    out.parent.mkdir(exist_ok=True)
    wheel = core_wheel(ROOT / "dist")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zf.write(path, f"meshdream/{path.relative_to(source).as_posix()}")
        zf.writestr("meshdream/vendor/__init__.py", '"""Copied from the core by build.py addon."""\n')
        zf.write(ROOT / "core/meshdream/client.py", "meshdream/vendor/client.py")
        zf.write(wheel, f"meshdream/core_wheel/{wheel.name}", compress_type=zipfile.ZIP_STORED)  # already deflated
    return out


def main(argv: list[str]) -> int:
    verb, args = (argv[0], argv[1:]) if argv else ("help", [])
    if verb not in ("setup", "demo", "test", "bench", "addon"):
        print(__doc__)
        return 0 if verb in ("help", "-h", "--help") else 2
    if verb == "addon":
        print(build_addon())
        return 0
    setup()
    if verb == "demo":
        run(PYTHON, ROOT / "scripts/demo.py", *args)
    elif verb == "test":
        run(PYTHON, "-m", "pytest", "tests", *args)
    elif verb == "bench":
        run(PYTHON, ROOT / "scripts/bench.py", *args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
