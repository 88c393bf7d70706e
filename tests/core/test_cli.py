import json
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import asset


def meshdream(*args):
    return subprocess.run([sys.executable, "-m", "meshdream.cli", *map(str, args)], capture_output=True, text=True)


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
