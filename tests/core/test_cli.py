import json
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import asset


def meshdream(*args, preexec_fn=None):
    return subprocess.run(
        [sys.executable, "-m", "meshdream.cli", *map(str, args)], capture_output=True, text=True, preexec_fn=preexec_fn
    )


def test_views_writes_depth_normal_mask_and_cameras(tmp_path):
    r = meshdream("views", asset("spot.obj"), "-o", tmp_path, "--views", "3", "--resolution", "64")
    assert r.returncode == 0, r.stderr
    cams = json.loads((tmp_path / "cameras.json").read_text())
    assert len(cams) == 3 and cams[0]["width"] == 64
    depth = np.asarray(Image.open(tmp_path / "view01_depth.png"))
    mask = np.asarray(Image.open(tmp_path / "view01_mask.png")) > 0
    assert depth.dtype == np.uint16 and mask.any() and (depth[~mask] == 0).all() and (depth[mask] > 0).all()


def test_info_and_errors_are_one_line(tmp_path):
    r = meshdream("info", asset("spot.obj"))
    assert r.returncode == 0 and json.loads(r.stdout)["faces"] == 5856
    r = meshdream("info", tmp_path / "missing.obj")
    assert r.returncode == 2
    assert r.stderr.startswith("meshdream: error: No mesh file") and "Traceback" not in r.stderr


def test_restyle_writes_a_textured_mesh_and_rejects_a_bad_texture(tmp_path):
    png = tmp_path / "texture.png"
    Image.fromarray(np.full((128, 128, 3), (200, 120, 60), np.uint8)).save(png)
    tiny = ["--views", "2", "--view-resolution", "64", "--steps", "2", "--strength", "0.3"]
    out = tmp_path / "restyled.glb"
    r = meshdream("restyle", asset("spot.obj"), "--texture", png, "--prompt", "red brick", "-o", out, *tiny)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and "Wrote" in r.stdout
    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(png)
    r = meshdream("restyle", asset("spot.obj"), "--texture", png, "--prompt", "oak", "-o", tmp_path / "b.glb", *tiny)
    assert r.returncode == 2 and "power-of-two" in r.stderr and "Traceback" not in r.stderr


def test_upscale_writes_a_bigger_texture_and_never_over_its_input(tmp_path):
    png = tmp_path / "texture.png"
    Image.fromarray(np.full((64, 64, 3), (200, 120, 60), np.uint8)).save(png)
    out = tmp_path / "big.png"
    r = meshdream("upscale", asset("spot.obj"), png, "-o", out, "--scale", "4")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (256, 256) and "Wrote" in r.stdout
    before = png.read_bytes()
    r = meshdream("upscale", asset("spot.obj"), png, "-o", png, "--overwrite")
    assert r.returncode == 2 and "input texture" in r.stderr and png.read_bytes() == before
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "odd.png")
    r = meshdream("upscale", asset("spot.obj"), tmp_path / "odd.png", "-o", tmp_path / "b.png")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "square" in r.stderr


DISK_BYTES = 64 * 1024


@pytest.fixture
def full_disk(tmp_path):
    """(folder, preexec_fn for the command) where writing more than 64 KB fails: a 64 KB tmpfs where one can be
    mounted (root: ENOSPC, a full disk as it is), else a 64 KB file size limit on the command's process with
    SIGXFSZ ignored, so its writes fail with EFBIG instead of killing it."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode == 0:
        yield folder, None
        subprocess.run(["umount", str(folder)], check=True)
        return

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_BYTES, DISK_BYTES))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    yield folder, limited


def noise_png(path, size: int, mode: str = "RGB"):
    """A texture that does not compress: its PNG is bigger than the full disk."""
    channels = len(mode)
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, channels), np.uint8)
    if mode == "RGBA":
        pixels[: size // 2, :, 3] = 0  # the top half to fill
    Image.fromarray(pixels, mode).save(path)
    return path


def full_disk_command(name: str, disk, tmp) -> list:
    """The command line of each writing command, its output on the full disk and its inputs elsewhere."""
    tiny = "--prompt red --views 2 --view-resolution 64 --texture-size 64 --steps 2".split()
    return {
        "texture-glb": lambda: ["texture", asset("spot.obj"), *tiny, "-o", disk / "next.glb"],
        "texture-obj": lambda: ["texture", asset("spot.obj"), *tiny, "-o", disk / "next.obj"],
        "views": lambda: ["views", asset("spot.obj"), "-o", disk, "--views", "8", "--resolution", "256"],
        "upscale": lambda: ["upscale", asset("spot.obj"), noise_png(tmp / "t.png", 128), "-o", disk / "big.png"],
        "inpaint": lambda: ["inpaint", asset("spot.obj"), noise_png(tmp / "t.png", 256, "RGBA"), "-o", disk / "f.png"],
    }[name]()


@pytest.mark.parametrize("name", ["texture-glb", "texture-obj", "views", "upscale", "inpaint"])
def test_a_full_disk_is_one_line_and_leaves_no_broken_file(full_disk, tmp_path, name):
    """The issue's `meshdream texture -o next.glb` on a full disk: a traceback and a truncated next.glb (with .obj
    a 0-byte PNG). Now: one line naming the file, the reason and the fix; exit 2; no file under a final name that
    is not whole, and no temporary left behind."""
    disk, preexec_fn = full_disk
    r = meshdream(*full_disk_command(name, disk, tmp_path), preexec_fn=preexec_fn)
    last = r.stderr.strip().splitlines()[-1].split("\r")[-1]  # after the progress bars
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert last.startswith(f"meshdream: error: Could not write '{disk}/"), last
    assert ("No space left on device; free some space" if preexec_fn is None else "File too large") in last
    left = sorted(disk.iterdir())
    assert not [p for p in left if p.name.startswith(".")], left  # no temporary
    if name == "views":  # the views written before the disk filled are whole; cameras.json last
        assert left and not (disk / "cameras.json").exists()
        for png in left:
            Image.open(png).load()
    else:
        assert left == []


def test_texture_with_pbr_writes_every_map_and_pbr_flags_need_pbr(tmp_path):
    """Issue 27: --pbr writes the OBJ's maps beside it (map_Pr, map_Pm, norm); its options alone are an error."""
    tiny = ["--views", "2", "--view-resolution", "64", "--texture-size", "64", "--steps", "2"]
    out = tmp_path / "spot.obj"
    r = meshdream("texture", asset("spot.obj"), "--prompt", "red brick", "-o", out, "--pbr", *tiny)
    assert r.returncode == 0, r.stderr
    assert "PBR: roughness, metallic, normal" in r.stdout
    for name in ("roughness", "metallic", "normal"):
        assert Image.open(tmp_path / f"spot_{name}.png").size == (64, 64)
    mtl = (tmp_path / "spot.mtl").read_text()
    assert "map_Pr spot_roughness.png" in mtl and "map_Pm spot_metallic.png" in mtl and "norm spot_normal.png" in mtl

    r = meshdream("texture", asset("spot.obj"), "--prompt", "oak", "-o", tmp_path / "b.glb", "--no-delight", *tiny)
    assert r.returncode == 2 and "need --pbr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b.glb").exists()
    r = meshdream("shape", "chair", "-o", tmp_path / "c.glb", "--pbr")
    assert r.returncode == 2 and "--texture" in r.stderr and "Traceback" not in r.stderr
    r = meshdream(
        "texture", asset("spot.obj"), "--prompt", "oak", "-o", tmp_path / "d.glb", "--pbr", "--material-model",
        tmp_path / "no-such-model", *tiny,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("meshdream: error:") and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "d.glb").exists()
