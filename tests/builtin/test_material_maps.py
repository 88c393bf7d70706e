"""Procedural PBR ground truth (issue 27): the maps come from the same fields as the albedo, and the albedo the
texture model trains on does not change."""

import numpy as np
import pytest
from meshdream.generators.builtin.materials import FAMILIES, height_to_normal, material, material_maps


@pytest.mark.parametrize("family", FAMILIES)
def test_albedo_is_materials_own(family):
    albedo = material(family, "green", 64, np.random.default_rng(3))
    maps = material_maps(family, "green", 64, np.random.default_rng(3))
    assert np.array_equal(maps["albedo"], albedo)
    for name in ("roughness", "metallic", "height"):
        assert maps[name].shape == (64, 64) and maps[name].dtype == np.float32 and np.isfinite(maps[name]).all()
    assert 0 <= maps["roughness"].min() and maps["roughness"].max() <= 1


def test_maps_follow_the_families():
    def maps(family):
        return material_maps(family, "gray", 128, np.random.default_rng(1))

    marble, metal, fabric, stripes = (maps(f) for f in ("marble", "metal", "fabric", "stripes"))
    brick = material_maps("brick", "red", 128, np.random.default_rng(1))
    mortar = brick["albedo"].mean(-1) > 0.65  # the light grey between red bricks
    assert 0.05 < mortar.mean() < 0.5
    assert brick["height"][mortar].mean() < brick["height"][~mortar].mean() - 0.005  # recessed
    assert brick["roughness"][mortar].mean() > brick["roughness"][~mortar].mean()
    assert metal["metallic"].min() == 1 and max(m["metallic"].max() for m in (brick, marble, fabric)) == 0
    assert marble["roughness"].mean() < 0.35 < fabric["roughness"].mean()
    assert np.ptp(stripes["height"]) == 0 and np.ptp(fabric["height"]) > 0


def test_height_to_normal_is_opengl():
    # Rising to the right at column 0 and towards the top of the image at row 0 (rows run down): the normal leans
    # away from each rise, left and down.
    y, x = np.mgrid[0:32, 0:32] / 32
    height = 0.01 * np.sin(2 * np.pi * x) - 0.01 * np.sin(2 * np.pi * y)
    n = height_to_normal(height)
    assert np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-5)
    assert n[16, 0, 0] < 0 and n[0, 16, 1] < 0
