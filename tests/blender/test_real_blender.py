"""The add-on in the real Blender program, window and all (Debian's `blender` 3.4 under `xvfb-run`), as a new user
meets it (issue 26): installed from the zip with nothing configured, its sidebar tab shows one set-up box; "Set up
local worker" makes a private environment and installs the core wheel from the zip with its dependencies (from a
local wheel folder standing in for the package index: tests/blender/wheelhouse.py); "Texture Selected" with the
panel's defaults textures Suzanne; a worker killed mid-job fails the job at once and the next job starts a new one;
quitting Blender leaves no worker behind; Create (issue 28) adds a textured object at the cursor and Blender's undo
removes it, leaving the scene as it was; with "PBR" on (issue 27) the new material has its roughness, metallic and
normal maps connected, the normal map visibly shades the red brick, and a PBR GLB written by save_textured imports
with its maps connected. Screenshots of each step stay in out/addon/ for a person to look at.
The steps inside Blender are in real_blender_session.py.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blender_env

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "addon"
BLENDER, XVFB_RUN = shutil.which("blender"), shutil.which("xvfb-run")
pytestmark = pytest.mark.skipif(
    not (BLENDER and XVFB_RUN),
    reason="needs the Blender program and xvfb-run on PATH (Debian: apt-get install -y blender xvfb xauth)",
)
# Tracebacks Blender may print at quit for modules that are not ours (torch's lazy namespaces look like add-ons
# to addon_utils.disable_all when the venv is on sys.path); anything naming the add-on's files is a failure.
ADDON_FILES = "scripts/addons/meshdream/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chroma(png: Path, box) -> np.ndarray:
    """Per-pixel colourfulness (max - min channel, 0..255) inside `box` (window coordinates, y up)."""
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    height = image.shape[0]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = image[max(0, height - y1) : height - max(0, y0), max(0, x0) : x1]
    return crop.max(axis=-1) - crop.min(axis=-1)


def pbr_glb(path: Path) -> Path:
    """A PBR GLB as a user gets it: Suzanne textured "red brick" with pbr=True (small settings), save_textured."""
    from meshdream import load_mesh, save_textured, texture_mesh

    from tests.conftest import asset

    mesh = load_mesh(asset("suzanne.obj"))
    result = texture_mesh(mesh, "red brick", n_views=4, view_resolution=64, texture_size=128, steps=4, pbr=True)
    return save_textured(mesh, result, path)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    sys.path.insert(0, str(ROOT))
    import build

    tmp = tmp_path_factory.mktemp("real_blender")
    glb = pbr_glb(tmp / "red-brick-pbr.glb")
    zip_path = build.build_addon()
    scene = tmp / "scene.blend"  # opening a file skips the splash screen
    subprocess.run(
        [
            BLENDER,
            "-b",
            "--factory-startup",
            "--python-expr",
            f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(scene)!r})",
        ],
        check=True,
        capture_output=True,
        timeout=60,
        env=blender_env(),
    )
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    from tests.blender.wheelhouse import wheelhouse

    wheels = wheelhouse()
    port = free_port()
    env = {k: v for k, v in blender_env().items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    env.update(
        BLENDER_USER_SCRIPTS=str(tmp / "scripts"),  # the install must not touch the user's Blender
        BLENDER_USER_CONFIG=str(tmp / "config"),
        BLENDER_USER_DATAFILES=str(tmp / "datafiles"),  # where the set-up puts its environment
        PIP_CONFIG_FILE=os.devnull,  # this machine's pip settings must not add other package sources
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [
            XVFB_RUN,
            "-a",
            "-s",
            "-screen 0 1280x800x24",
            BLENDER,
            "--factory-startup",
            "--enable-event-simulate",
            str(scene),
            "--python",
            str(Path(__file__).with_name("real_blender_session.py")),
            "--",
            str(zip_path),
            str(wheels),
            str(port),
            str(OUT),
            str(glb),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    seconds = time.monotonic() - t0
    left = workers_on(port)  # read before the venv is removed: its Python is in the command line
    shutil.rmtree(tmp / "datafiles", ignore_errors=True)  # 1.6 GB
    (OUT / "blender-stdout.txt").write_text(done.stdout)
    (OUT / "blender-stderr.txt").write_text(done.stderr)
    report_path = OUT / "report.json"
    assert report_path.exists(), (
        f"Blender exited ({done.returncode}) without a report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    report = json.loads(report_path.read_text())
    report.update(seconds=seconds, workers_left=left, venv_root=str(tmp / "datafiles"))
    return report, done


def workers_on(port: int) -> list:
    """Command lines of `meshdream serve` processes on `port` still running (Linux /proc)."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and str(port).encode() in args and any(b"meshdream" in a for a in args):
            out.append(b" ".join(args).decode(errors="replace"))
    return out


def test_the_session_ran_every_step(session):
    report, done = session
    assert "error" not in report, report["error"] + "\n".join(report["steps"])
    assert report.get("ok"), report["steps"]
    assert report["invoke"] == [["RUNNING_MODAL"]] * 4  # the modal operator, not the synchronous path
    assert report["create_invoke"] == ["RUNNING_MODAL"]
    assert report["panel_draws"] > 0


def test_the_panel_drew_without_python_errors(session):
    """Blender prints exceptions from panel draws and operators to stderr and carries on."""
    _, done = session
    before, *tracebacks = done.stderr.split("Traceback (most recent call last)")
    ours = [t for t in tracebacks if ADDON_FILES in t or "real_blender_session" in t]
    assert not ours, "\n".join(ours)
    assert "Error" not in before, before


def test_set_up_from_the_first_run_box_fills_in_the_python(session):
    report, _ = session
    assert report["python_before"] == "" and report["first_run_box"]
    assert report["set_up"] == ["FINISHED"] and report["set_up_ui_s"] < 1.0  # the install runs on in the background
    assert report["set_up_state"] == "done", report["set_up_error"]
    venv_python = Path(report["venv_root"]) / "meshdream" / "venv" / "bin" / "python"
    assert report["python_after"] == str(venv_python)
    assert report["device"] == "cpu"
    assert any(line.startswith("Installed MeshDream 0.1.0 in ") for line in report["set_up_lines"])


def test_the_first_texture_with_the_defaults_gives_suzanne_a_generated_image(session):
    from meshdream.generators.builtin import CARD

    texture_size = json.loads(CARD.read_text())["defaults"]["texture_size"]
    textured = session[0]["textured"]
    assert textured["material"] == "MeshDream Suzanne"
    assert textured["image"]["size"] == [texture_size, texture_size]  # the model's own: the panel's 0
    assert textured["image"]["distinct_sampled_rgb"] > 20  # not a constant image


def test_quick_gives_a_preview_and_reports_its_time(session):
    from meshdream.presets import PRESETS

    quick, size = session[0]["quick"], PRESETS["quick"].texture_size
    print(f"\nQuick in Blender 3.4 (worker running), click to texture: {quick['seconds']:.1f} s")
    assert session[0]["quick_invoke"] == ["RUNNING_MODAL"]
    assert quick["image"].startswith("MeshDream Suzanne") and quick["size"] == [size, size]


def test_a_killed_worker_fails_the_job_at_once_and_the_next_job_restarts_it(session):
    report, _ = session
    # Measured from the moment the worker's sockets close: SIGKILL frees its ~1 GB first, which took the kernel
    # 0.2-0.5 s here with other work on the cores; nothing can see the death before that.
    assert report["failed_after_kill_s"] - report["closed_after_kill_s"] < 0.1, report
    assert report["kill_error"].startswith("The MeshDream worker stopped during the job")
    assert not report["zombie"], report["zombie_status"]  # reaped
    assert report["restarted_image"] and report["restarted_image"] != report["textured"]["image"]["name"]


def test_quitting_blender_leaves_no_worker(session):
    assert session[0]["workers_left"] == []


def test_the_screenshots_show_the_panel_and_a_textured_suzanne(session):
    report, _ = session
    assert report["screenshots"] == [
        "1-first-run.png",
        "2-setting-up.png",
        "3-set-up.png",
        "4-textured.png",
        "5-pbr-red-brick.png",
        "6-pbr-flat-normals.png",
        "7-worker-killed.png",
    ]
    first, textured = OUT / "1-first-run.png", OUT / "4-textured.png"
    assert first.stat().st_size > 10_000 and textured.stat().st_size > 10_000
    box = report["object_box"]
    before, after = chroma(first, box), chroma(textured, box)
    # Solid-mode grey before; colours from the generated texture after (Material Preview shows the image).
    assert (before > 40).mean() < 0.05  # the selection outline, axes
    assert (after > 40).mean() > 0.15, f"only {(after > 40).mean():.1%} of the object's box is coloured"
    assert np.std(after) > 10


def check_pbr_inputs(inputs: dict, uv_map=None) -> None:
    """Base colour (sRGB), roughness and metallic (Non-Color) images and a tangent-space normal map, all connected."""
    assert all(inputs[name]["image"] for name in ("Base Color", "Roughness", "Metallic", "Normal")), inputs
    assert inputs["Base Color"]["colorspace"] == "sRGB", inputs
    assert {inputs[name]["colorspace"] for name in ("Roughness", "Metallic", "Normal")} == {"Non-Color"}, inputs
    space, normal_uv = inputs["Normal"]["normal_map"]
    assert space == "TANGENT" and (uv_map is None or normal_uv == uv_map), inputs


def test_the_pbr_toggle_makes_a_principled_material_with_the_three_maps(session):
    pbr = session[0]["pbr"]
    assert pbr["material"].startswith("MeshDream Suzanne") and pbr["material"] != "MeshDream Suzanne"
    check_pbr_inputs(pbr["inputs"], pbr["uv_map"])


def test_a_pbr_glb_imports_with_its_maps_connected(session):
    (imported,) = session[0]["glb"]
    check_pbr_inputs(imported["inputs"])


def test_the_normal_map_shades_the_red_brick(session):
    """The lit PBR screenshot against the same view with the Normal Map node muted: the normal map changes the
    shading across the object (bumps), and the brick is red."""
    from PIL import Image

    report, _ = session
    x0, y0, x1, y1 = (int(round(v)) for v in report["object_box"])
    images = []
    for name in ("5-pbr-red-brick.png", "6-pbr-flat-normals.png"):
        image = np.asarray(Image.open(OUT / name).convert("RGB")).astype(float)
        height = image.shape[0]
        images.append(image[max(0, height - y1) : height - max(0, y0), max(0, x0) : x1])
    bumpy, flat = images
    changed = (np.abs(bumpy - flat).max(axis=-1) > 4).mean()
    assert changed > 0.02, f"the normal map changed only {changed:.1%} of the object's box"
    red = bumpy[..., 0] - bumpy[..., 1:].max(axis=-1)
    assert (red > 20).mean() > 0.10, f"only {(red > 20).mean():.1%} of the object's box is red"


def test_create_adds_a_textured_object_at_the_cursor_and_undo_removes_it(session):
    """Issue 28 in the real program: one click adds the object, its mesh, material and image at the 3D cursor and
    removes nothing; one undo (Ctrl-Z) takes the scene back to exactly what it was."""
    report, _ = session
    create = report["create"]
    print(f"\nCreate in Blender 3.4 (worker running), click to object: {create['seconds']:.1f} s")
    assert create["added"]["objects"] == ["a tall oak chair"] and create["active"] == "a tall oak chair"
    assert len(create["added"]["meshes"]) == len(create["added"]["materials"]) == 1 and create["added"]["images"]
    assert not any(create["removed"].values()), create["removed"]
    assert create["location"] == pytest.approx([2.5, 0.0, 0.0]) and create["faces"] > 100
    assert report["undo"] == ["FINISHED"]
    assert report["after_undo"] == report["before_create"]
