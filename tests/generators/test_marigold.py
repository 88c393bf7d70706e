"""Marigold material models through diffusers (issue 27), tested with tiny random-weight pipelines built locally:
loaded as a user's cached or local model loads, run end to end on rendered views, nothing downloaded."""

import numpy as np
import pytest
from meshdream.generators.base import GeneratorKindError, ModelNotFoundError
from meshdream.generators.marigold import detail_normals, rotate_onto_z
from meshdream.generators.material_models import check_material_views, load_material_model
from meshdream.geometry import orbit_cameras, render


@pytest.fixture(scope="module")
def marigold(tmp_path_factory):
    from tests.tiny_models import build_marigold

    root = tmp_path_factory.mktemp("marigold")
    return {kind: build_marigold(root / kind, kind) for kind in ("intrinsics", "normals")}


@pytest.fixture(scope="module")
def views(spot):
    cams = orbit_cameras(2, resolution=48, mesh=spot)
    maps = [render(spot, cam) for cam in cams]
    masks = np.stack([m.mask for m in maps])
    normals = np.stack([m.normal @ cam.rotation.T for m, cam in zip(maps, cams)]).astype(np.float32)
    images = np.where(masks[..., None], np.float32(0.6) * np.random.default_rng(0).random((2, 48, 48, 3)), 1)
    return images.astype(np.float32), masks, normals


def test_intrinsics_model_gives_albedo_roughness_metallic(marigold, views):
    model = load_material_model(str(marigold["intrinsics"]), device="cpu")
    assert model.makes_albedo and "intrinsics" in model.name
    out = check_material_views(model.estimate(*views, prompt="red brick"), views[1].shape)
    assert out.albedo.shape == (2, 48, 48, 3) and out.roughness.shape == (2, 48, 48)
    for value in (out.albedo, out.roughness, out.metallic):
        assert np.isfinite(value).all() and 0 <= value.min() and value.max() <= 1
    assert np.ptp(out.albedo) > 0  # the decoded prediction, not a constant fill
    np.testing.assert_allclose(np.linalg.norm(out.normal, axis=-1), 1, atol=1e-4)  # the built-in model's normals


def test_normals_model_gives_detail_and_joins_intrinsics(marigold, views):
    normals_only = load_material_model(str(marigold["normals"]), device="cpu")
    assert not normals_only.makes_albedo
    out = check_material_views(normals_only.estimate(*views), views[1].shape)
    assert out.albedo is None and out.roughness.shape == (2, 48, 48)  # roughness from the built-in model
    np.testing.assert_allclose(np.linalg.norm(out.normal, axis=-1), 1, atol=1e-4)
    joined = load_material_model(f"{marigold['intrinsics']}+{marigold['normals']}", device="cpu")
    both = joined.estimate(*views)
    assert joined.makes_albedo and both.albedo is not None
    np.testing.assert_allclose(both.normal, out.normal, atol=1e-5)  # Marigold's normals, not the built-in's


def test_marigold_errors_name_the_problem(tiny, tmp_path, monkeypatch, marigold):
    with pytest.raises(GeneratorKindError, match="not a Marigold"):
        load_material_model(str(tiny("sd15_plain")))
    with pytest.raises(ModelNotFoundError, match="No model at"):
        load_material_model(str(tmp_path / "nowhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        load_material_model("prs-eth/marigold-iid-appearance-v1-1")
    with pytest.raises(GeneratorKindError, match="two Marigold normals"):
        load_material_model(f"{marigold['normals']}+{marigold['normals']}")


def test_detail_is_taken_relative_to_the_predicted_surface():
    # A sphere's normals with small bumps: the sphere drops out, the bumps stay, in the view's frame.
    y, x = (np.mgrid[0:64, 0:64] - 31.5) / 40
    mask = x**2 + y**2 < 0.6
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))
    bumps = 0.15 * np.sin(x * 60)
    sphere = np.stack([x, -y, z], -1)
    bumpy = sphere + np.stack([bumps, 0 * x, 0 * x], -1)
    bumpy /= np.linalg.norm(bumpy, axis=-1, keepdims=True)
    smooth = detail_normals(sphere, mask)
    detail = detail_normals(bumpy, mask)
    inner = mask & (x**2 + y**2 < 0.3)
    assert np.degrees(np.arccos(np.clip(smooth[inner][:, 2], -1, 1))).mean() < 3
    assert np.corrcoef(detail[inner][:, 0], bumps[inner])[0, 1] > 0.9
    base = sphere[40, 40] / np.linalg.norm(sphere[40, 40])
    np.testing.assert_allclose(rotate_onto_z(base[None], base[None])[0], (0, 0, 1), atol=1e-6)


def test_builtin_spec_loads_the_builtin_model():
    assert load_material_model("builtin").name == "builtin"
