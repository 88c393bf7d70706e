"""Shape generation: shipped weights, determinism, prompts, procedural data, metrics and points_to_mesh."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from meshdream.errors import InvalidParameterError, MeshDreamError
from meshdream.progress import CancelToken
from meshdream.shapes import generate_shape, is_closed, load_shape_model, parse_prompt, points_to_mesh, shape_categories
from meshdream.shapes.metrics import chamfer_matrix, coverage, emd_matrix, mmd, one_nna
from meshdream.shapes.procedural import CATEGORIES, build_set, make_shape, sample_cloud, shape_seed
from meshdream.shapes.sampler import sample_points
from safetensors.torch import load_file
from scipy.spatial import cKDTree

from tests.device_double import other_device

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chair():
    return generate_shape("chair", seed=3)


# ------------------------------------------------------------------------------------------------ model and API
def test_shipped_weights_load_and_sample_requested_points(chair):
    model = load_shape_model()
    assert model.categories == list(CATEGORIES) == shape_categories()
    assert len(shape_categories()) >= 10
    assert chair.shape == (2048, 3) and chair.dtype == np.float32 and np.isfinite(chair).all()
    # Normalized like the training data: bounding box centred, farthest point at radius 1.
    np.testing.assert_allclose(chair.min(0) + chair.max(0), 0, atol=1e-5)
    assert np.isclose(np.linalg.norm(chair, axis=1).max(), 1.0, atol=1e-5)
    few = generate_shape("mug", n_points=300, steps=8)
    assert few.shape == (300, 3)
    # More points than the decoder emits: the extra ones densify the same surface.
    base, many = generate_shape("mug", seed=1), generate_shape("mug", n_points=5000, seed=1)
    assert many.shape == (5000, 3) and np.isfinite(many).all()
    gap, _ = cKDTree(base).query(many)
    spacing, _ = cKDTree(base).query(base, k=2)
    assert np.median(gap) <= np.median(spacing[:, 1]) and gap.max() < 0.1


def test_same_seed_gives_the_same_shape(chair):
    again = generate_shape("chair", seed=3)
    np.testing.assert_array_equal(chair, again)
    other = generate_shape("chair", seed=4)
    assert np.abs(other - chair).max() > 0.1


def test_generated_chair_is_a_chair(chair):
    """Closer (Chamfer) to held-out chairs than to held-out shapes of any other category."""
    ref = build_set(4, "heldout")
    d = chamfer_matrix(chair[None], ref.points)[0]
    per_cat = {c: d[ref.labels == i].min() for i, c in enumerate(CATEGORIES)}
    assert min(per_cat, key=per_cat.get) == "chair", per_cat


def test_prompts_pick_category_and_words():
    assert parse_prompt("a tall round table") == ("table", ("tall", "round"))
    assert parse_prompt("Armchair") == ("chair", ("arms",))
    assert parse_prompt("three wooden chairs") == ("chair", ())
    assert parse_prompt("pine tree") == ("tree", ("pine",))
    assert parse_prompt("a round mug") == ("mug", ())  # words a category was not trained with are dropped
    assert parse_prompt(CATEGORIES.index("lamp")) == ("lamp", ())


def test_unknown_category_lists_the_known_ones():
    with pytest.raises(InvalidParameterError) as err:
        generate_shape("a giraffe")
    for name in CATEGORIES:
        assert name in str(err.value)
    with pytest.raises(InvalidParameterError, match="out of range"):
        generate_shape(99)
    with pytest.raises(InvalidParameterError, match="n_points"):
        generate_shape("chair", n_points=4)


def test_generate_shape_runs_on_the_given_device():
    """On an accelerator (the device double: any CPU tensor meeting one of its tensors fails, as on CUDA) a seed
    gives the CPU's cloud: guided and unguided, subsampled and densified (resize_cloud's two paths)."""
    jobs = [dict(n_points=300, guidance=2.0), dict(n_points=3000, guidance=1.0)]
    on_cpu = [generate_shape("tall table", steps=6, seed=5, **job) for job in jobs]
    with other_device() as dev:
        on_dev = [generate_shape("tall table", steps=6, seed=5, device=dev, **job) for job in jobs]
    for a, b in zip(on_cpu, on_dev):
        assert isinstance(b, np.ndarray) and b.dtype == np.float32
        np.testing.assert_allclose(b, a, atol=1e-5)
    with pytest.raises(InvalidParameterError, match="device"):
        generate_shape("chair", device="not-a-device")


def test_progress_and_cancel():
    seen = []
    generate_shape("vase", n_points=64, steps=5, progress=seen.append)
    assert [p.step for p in seen] == list(range(6)) and seen[-1].stage == "denoise"
    token = CancelToken()
    token.cancel()
    with pytest.raises(MeshDreamError, match="Cancelled"):
        generate_shape("vase", n_points=64, steps=5, cancel=token)


# ------------------------------------------------------------------------------------------------ procedural data
def test_procedural_categories_are_normalized_and_seeded():
    assert len(CATEGORIES) >= 10
    for cat in CATEGORIES:
        cloud = sample_cloud(cat, seed=11)
        assert cloud.shape == (2048, 3) and np.isfinite(cloud).all()
        np.testing.assert_allclose(cloud.min(0) + cloud.max(0), 0, atol=1e-5)
        assert np.isclose(np.linalg.norm(cloud, axis=1).max(), 1.0, atol=1e-5)
    np.testing.assert_array_equal(sample_cloud("car", 5), sample_cloud("car", 5))
    train = {shape_seed(c, i, "train") for c in CATEGORIES for i in range(5000)}
    heldout = {shape_seed(c, i, "heldout") for c in CATEGORIES for i in range(5000)}
    assert len(train) == len(heldout) == 5000 * len(CATEGORIES) and not train & heldout


def test_surface_filter_drops_hidden_faces():
    """A mug's cavity is carved out and parts hidden inside others are not sampled."""
    shape = make_shape("mug", 0)
    pts = shape.sample(4000, np.random.default_rng(0))
    d = np.stack([p.sdf(pts) for p in shape.parts], 1)
    pos = ~np.array([p.negative for p in shape.parts])
    inside_solid = (d[:, pos].min(1) < -1e-3) & (d[:, ~pos].min(1) > 1e-3)
    assert not inside_solid.any()
    assert (d[:, ~pos].min(1) < 1e-3).mean() > 0.1  # the inner wall is part of the surface


# ------------------------------------------------------------------------------------------------ metrics
def test_metrics_on_known_sets():
    rng = np.random.default_rng(0)
    spheres = rng.normal(size=(6, 256, 3))
    spheres /= np.linalg.norm(spheres, axis=2, keepdims=True)
    cubes = rng.uniform(-1, 1, size=(6, 256, 3))
    d = chamfer_matrix(spheres, cubes)
    np.testing.assert_allclose(d, chamfer_matrix(cubes, spheres).T, rtol=1e-9)
    assert np.allclose(np.diag(chamfer_matrix(spheres, spheres)), 0)
    assert one_nna(chamfer_matrix(spheres, spheres), chamfer_matrix(cubes, cubes), d) == 1.0
    assert mmd(d) > 0 and 0 < coverage(d) <= 1
    # Two samples of one distribution: 1-NNA near 50%, not near 100%.
    more = rng.normal(size=(6, 256, 3))
    more /= np.linalg.norm(more, axis=2, keepdims=True)
    assert one_nna(chamfer_matrix(spheres, spheres), chamfer_matrix(more, more), chamfer_matrix(more, spheres)) <= 0.75
    e = emd_matrix(spheres[:2, :64], spheres[:2, :64])
    assert np.allclose(np.diag(e), 0) and (e[0, 1] > 0)


# ------------------------------------------------------------------------------------------------ points_to_mesh
def _hausdorff(mesh: trimesh.Trimesh, surface: np.ndarray) -> float:
    """Symmetric Hausdorff distance between a mesh and dense samples of the true surface (both ways sampled)."""
    s = trimesh.sample.sample_surface(mesh, 50000, seed=0)[0]
    return max(cKDTree(surface).query(s)[0].max(), cKDTree(s).query(surface)[0].max())


@pytest.mark.parametrize("name", ["sphere", "torus"])
def test_points_to_mesh_recovers_known_surfaces(name):
    truth = (
        trimesh.creation.icosphere(5, radius=1.0)
        if name == "sphere"
        else trimesh.creation.torus(1.0, 0.35, major_sections=128, minor_sections=64)
    )
    # A scan in its own frame and units: moved and scaled, which the mesh must keep.
    truth.apply_transform(trimesh.transformations.scale_and_translate(3.0, [5.0, -2.0, 1.0]))
    points, _ = trimesh.sample.sample_surface(truth, 2048, seed=1)
    dense, _ = trimesh.sample.sample_surface(truth, 50000, seed=2)
    mesh = points_to_mesh(points)
    assert is_closed(mesh) and len(mesh.faces) <= 20000
    uv = mesh.visual.uv
    assert uv.shape == (len(mesh.vertices), 2) and uv.min() >= 0 and uv.max() <= 1
    welded = points_to_mesh(points, unwrap=False)
    assert welded.is_watertight and welded.is_winding_consistent and welded.volume > 0
    assert _hausdorff(welded, dense) < 0.06 * 3.0  # 6% of the radius
    assert abs(welded.volume / truth.volume - 1) < 0.05


def test_points_to_mesh_meets_the_face_budget_and_meshes_generated_clouds(chair):
    mesh = points_to_mesh(chair, face_budget=3000)
    assert len(mesh.faces) <= 3000 and is_closed(mesh)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((100, 3), np.nan), "NaN"),
        (np.random.default_rng(0).normal(size=(10, 3)), "at least 16"),
        (np.random.default_rng(0).normal(size=(100, 2)), r"\(N, 3\)"),
        (np.zeros((100, 3)), "one spot"),
        ("not points", r"\(N, 3\)"),
    ],
)
def test_bad_points_are_refused_clearly(bad, match):
    with pytest.raises(InvalidParameterError, match=match):
        points_to_mesh(bad)


# ------------------------------------------------------------------------------------------------ training script
def test_training_script_trains_a_loadable_model(tmp_path):
    """The script that reproduces the shipped weights, shortened: both stages run, the autoencoder learns, and
    the written model loads and samples like the shipped one."""
    out = tmp_path / "shape_model.safetensors"
    args = ["--ae-steps", "60", "--steps", "30", "--per-category", "2", "--threads", "1", "--out", str(out)]
    log = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_shape_model.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    losses = [float(line.split(" loss ")[1].split()[0]) for line in log.splitlines() if line.startswith("autoencoder ")]
    assert len(losses) >= 2 and losses[-1] < 0.5 * losses[0], log
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["categories"] == list(CATEGORIES) and card["training"]["autoencoder"]["steps"] == 60
    model = load_shape_model(str(out))
    cloud = sample_points(model, [0], np.zeros((1, len(model.tags))), 512, [0], steps=5)
    assert cloud.shape == (1, 512, 3) and np.isfinite(cloud).all()


def test_training_script_trains_on_the_given_device(tmp_path):
    """`--device` (cuda for users; the device double here): data, networks, random draws, Chamfer matches and EMA
    all reach the device, and a seed trains the same weights as on the CPU."""
    spec = importlib.util.spec_from_file_location("train_shape_model", ROOT / "scripts" / "train_shape_model.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--ae-steps", "3", "--ae-batch", "4", "--steps", "3", "--batch", "16", "--per-category", "1"]
    args += ["--threads", "1"]
    script.main([*args, "--out", str(tmp_path / "cpu.safetensors")])
    with other_device() as dev:
        script.main([*args, "--device", str(dev), "--out", str(tmp_path / "dev.safetensors")])
    cpu, dev = load_file(str(tmp_path / "cpu.safetensors")), load_file(str(tmp_path / "dev.safetensors"))
    assert cpu.keys() == dev.keys()
    for key in cpu:
        np.testing.assert_allclose(dev[key].float().numpy(), cpu[key].float().numpy(), atol=2e-3, err_msg=key)
