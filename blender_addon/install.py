"""Set up a local worker from inside Blender: a private virtual environment under Blender's user data folder,
made with a Python 3.10+ found on this machine, with the MeshDream wheel this zip carries and its dependencies
installed by pip (PyTorch's CUDA build where `nvidia-smi` answers, its CPU build otherwise). It all runs as a
`chores.Chore`: on a thread, with progress, cancellable; nothing waits on Blender's main thread."""

import glob
import os
import shutil
import sys
from pathlib import Path

from . import backends
from .chores import ChoreError, clean_env

MIN_PYTHON = (3, 10)  # the core's requires-python
TORCH_INDEX = "https://download.pytorch.org/whl/"  # + "cu126" or "cpu"
CUDA_TAG = "cu126"  # wheels for NVIDIA drivers from 525 (CUDA 12) on
ADDON_DIR = Path(__file__).resolve().parent
VERSION_PROBE = "import sys, venv; print('%d.%d' % sys.version_info[:2])"


def venv_python(folder: str) -> str:
    return os.path.join(folder, "Scripts", "python.exe") if os.name == "nt" else os.path.join(folder, "bin", "python")


def carried_core() -> str:
    """What to pip-install as MeshDream: the wheel in the zip (`build.py addon` puts it there), or in a source
    checkout the core folder beside the add-on."""
    wheels = sorted(glob.glob(str(ADDON_DIR / "core_wheel" / "meshdream-*.whl")))
    if wheels:
        return wheels[-1]
    if (ADDON_DIR.parent / "core" / "pyproject.toml").exists():
        return str(ADDON_DIR.parent / "core")
    raise ChoreError("This add-on carries no MeshDream wheel; install the release zip (or build it with build.py).")


def existing(private_folder: str) -> list:
    """Pythons that may already have MeshDream, to try before installing: an earlier set-up's, the one behind a
    `meshdream` command on PATH, a source checkout's .venv."""
    found = [venv_python(private_folder)]
    command = shutil.which("meshdream")
    if command:
        try:
            with open(command, "rb") as f:
                first = f.readline().decode(errors="replace")
            if first.startswith("#!") and "python" in first:
                found.append(first[2:].strip().split()[0])
        except OSError:
            pass
        found.append(os.path.join(os.path.dirname(command), "python.exe" if os.name == "nt" else "python"))
    found.append(str(ADDON_DIR.parent / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")))
    unique = []
    for path in found:
        if os.path.isfile(path) and os.path.realpath(path) not in [os.path.realpath(p) for p in unique]:
            unique.append(path)
    return unique


def find_existing(chore, private_folder: str):
    """The first Python of `existing` that imports MeshDream's server, or None."""
    for python in existing(private_folder):
        chore.status = f"Looking for MeshDream in {python}"
        try:
            chore.run([python, "-c", backends.PROBE], backends.PROBE_TIMEOUT_S, "")
            return python
        except ChoreError:
            if chore.cancelled.is_set():
                raise
    return None


def base_pythons(pointed: str) -> list:
    """Pythons to make the environment with, in order: the one the user pointed to, python3 / python on PATH,
    Blender's own."""
    found = [pointed] if pointed else []
    found += [shutil.which(name) for name in ("python3", "python")]
    found.append(sys.executable)
    return [p for p in found if p and os.path.isfile(p)]


def pick_python(chore, pointed: str) -> str:
    for python in base_pythons(pointed):
        chore.status = f"Trying {python}"
        try:
            version = chore.run([python, "-c", VERSION_PROBE], 60, "").strip().splitlines()[-1]
        except ChoreError:
            if chore.cancelled.is_set():
                raise
            continue
        if tuple(int(v) for v in version.split(".")) >= MIN_PYTHON:
            chore.lines.append(f"Using Python {version}: {python}")
            return python
    raise ChoreError(
        "No Python 3.10 or newer with venv was found; install one from python.org (on Linux also its venv "
        "package), then press Set up local worker again."
    )


def has_nvidia_gpu(chore) -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        return "GPU" in chore.run(["nvidia-smi", "-L"], 30, "")
    except ChoreError:
        if chore.cancelled.is_set():
            raise
        return False


def pip_steps(core: str, source: str, cuda: bool) -> list:
    """(label, fraction reached, pip install arguments) per step. source: a wheel folder or index URL replacing
    the package index (offline machines, mirrors); empty: pip's own index (PyPI or the user's pip config) plus
    PyTorch's index for the right torch build."""
    package = f"{core}[server]"
    if source:
        where = ["--no-index", "--find-links", source] if os.path.isdir(source) else ["--index-url", source]
        return [("Installing MeshDream and its packages", 0.95, [*where, package])]
    steps = []
    if sys.platform != "darwin":  # macOS: PyPI's torch is the right one (MPS)
        build = CUDA_TAG if cuda else "cpu"
        label = "Installing PyTorch for NVIDIA GPUs (~3 GB)" if cuda else "Installing PyTorch for the CPU (~200 MB)"
        steps.append((label, 0.6, ["--index-url", TORCH_INDEX + build, "torch"]))
    steps.append(("Installing MeshDream and its packages", 0.95, [package]))
    return steps


def set_up(chore, folder: str, pointed: str, source: str) -> str:
    """Make the environment in `folder` and install MeshDream there; returns its Python."""
    core = carried_core()
    python = pick_python(chore, pointed)
    cuda = has_nvidia_gpu(chore)
    chore.lines.append(
        "An NVIDIA GPU answers: installing PyTorch with CUDA." if cuda else "No NVIDIA GPU: CPU PyTorch."
    )
    chore.status, chore.fraction = f"Creating the environment in {folder}", 0.02
    env = clean_env()
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    chore.run(
        [python, "-m", "venv", "--clear", folder],
        600,
        f"check that {os.path.dirname(folder)} is writable and has free space, then press Set up local worker again.",
        env=env,
    )
    target = venv_python(folder)
    start = 0.05
    for label, end, args in pip_steps(core, source, cuda):
        chore.status, chore.detail, chore.fraction = label, "", start
        chore.run(
            [target, "-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check", *args],
            3600,
            "check the internet connection (or the package source) and press Set up local worker again.",
            env=env,
            on_line=_progress(chore, label, start, end),
        )
        start = end
    chore.status, chore.detail = "Checking the new environment", ""
    fix = "press Set up local worker again; if it fails again, report it with this message."
    version = chore.run([target, "-c", backends.PROBE], backends.PROBE_TIMEOUT_S, fix).strip().splitlines()[-1]
    chore.lines.append(f"Installed MeshDream {version} in {folder}.")
    return target


def _progress(chore, label, start, end):
    """Show the package pip is at beside the step; creep the fraction toward `end` as packages come."""

    def on_line(line):
        for verb in ("Collecting", "Downloading", "Processing", "Installing collected packages"):
            if line.startswith(verb):
                what = line[len(verb) :].strip(" :")
                chore.detail = f"{verb} {os.path.basename(what.split()[0]) if what else ''}".strip()
                chore.fraction = min(end - 0.01, chore.fraction + (end - chore.fraction) * 0.08)
                return

    return on_line
