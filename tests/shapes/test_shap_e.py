"""Open-vocabulary shapes (Shap-E through diffusers): tiny random-weight pipelines saved as diffusers folders and
loaded by `load_shape_model(folder)` exactly as a cached openai/shap-e would be, run end to end on the CPU."""

from __future__ import annotations

import dataclasses

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.errors import CancelledError, InvalidParameterError
from meshdream.generators import GeneratorKindError, ModelNotFoundError
from meshdream.progress import CancelToken
from meshdream.shapes import generate_shape, is_closed, load_shape_model, shape_mesh
from meshdream.shapes.sampler import ShapeModel
from PIL import Image
from scipy.spatial import cKDTree

from tests.device_double import other_device
from tests.tiny_models import build_shap_e

STEPS = 3  # Heun: 2 x 3 - 1 = 5 prior evaluations
GRID = 32  # SDF samples per side (the real default is 128)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    model = load_shape_model(str(build_shap_e(tmp_path_factory.mktemp("shap_e"), "text")))
    return dataclasses.replace(model, grid=GRID)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    model = load_shape_model(build_shap_e(tmp_path_factory.mktemp("shap_e_img2img"), "image"))
    return dataclasses.replace(model, grid=GRID)


@pytest.fixture(scope="module")
def chair_mesh(text_model):
    return text_model.mesh("a red chair", seed=0, steps=STEPS)


def assert_normalized(points: np.ndarray) -> None:
    """Bounding box centred at the origin, farthest point at radius 1 (shapes' normalize)."""
    np.testing.assert_allclose(points.min(0) + points.max(0), 0, atol=1e-5)
    assert np.isclose(np.linalg.norm(points, axis=1).max(), 1.0, atol=1e-5)


def test_text_model_makes_a_closed_normalized_unwrapped_mesh(text_model, chair_mesh):
    assert text_model.open_vocabulary and text_model.kind == "text"
    assert len(chair_mesh.faces) > 100 and is_closed(chair_mesh)
    assert_normalized(chair_mesh.vertices)
    uv = chair_mesh.visual.uv
    assert uv.shape == (len(chair_mesh.vertices), 2) and uv.min() >= 0 and uv.max() <= 1
    assert chair_mesh.metadata["finish_mesh"]["closed"]


def test_same_seed_same_mesh_and_progress_per_step(text_model, chair_mesh):
    seen = []
    again = text_model.mesh("a red chair", seed=0, steps=STEPS, progress=seen.append)
    np.testing.assert_array_equal(again.vertices, chair_mesh.vertices)
    np.testing.assert_array_equal(again.faces, chair_mesh.faces)
    assert [(p.stage, p.step) for p in seen] == [("denoise", i) for i in range(2 * STEPS)]
    assert seen[-1].fraction == 1.0
    other = text_model.mesh("a red chair", seed=1, steps=STEPS, unwrap=False)
    assert not np.array_equal(other.vertices, chair_mesh.vertices)


def test_cancel_stops_denoising(text_model):
    token, seen = CancelToken(), []

    def stop_at_two(p):
        seen.append(p.step)
        if p.step == 2:
            token.cancel()

    with pytest.raises(CancelledError):
        text_model.mesh("a red chair", steps=STEPS, progress=stop_at_two, cancel=token)
    assert seen == [0, 1, 2]
    # The pipeline's own progress bar is back.
    assert "progress_bar" not in vars(text_model.pipe)


def test_runs_on_another_device(chair_mesh, tmp_path):
    """Every tensor reaches the model's device (the stand-in for CUDA); the shape is the CPU's up to float noise.
    A model of its own (the same weights): one that went there and back may round differently."""
    model = dataclasses.replace(load_shape_model(build_shap_e(tmp_path, "text")), grid=GRID)
    with other_device() as dev:
        model.to(dev)
        assert model.device == dev
        moved = model.mesh("a red chair", seed=0, steps=STEPS)
    assert is_closed(moved)
    gap, _ = cKDTree(chair_mesh.vertices).query(moved.vertices)
    assert gap.max() < 0.02


def test_points_and_generate_shape_sample_its_surface(text_model, chair_mesh):
    cloud = text_model.points("a red chair", n_points=500, seed=0, steps=STEPS)
    assert cloud.shape == (500, 3) and cloud.dtype == np.float32
    assert_normalized(cloud)
    via = generate_shape("a red chair", n_points=500, seed=0, steps=STEPS, shape_model=text_model)
    np.testing.assert_array_equal(via, cloud)
    # On the mesh's surface (both are normalized from the same surface, so nearly the same frame).
    distance = np.abs(chair_mesh.nearest.signed_distance(cloud))
    assert np.median(distance) < 0.02
    with pytest.raises(InvalidParameterError, match="n_points"):
        generate_shape("a red chair", n_points=3, shape_model=text_model)


def test_shape_mesh_takes_either_model(text_model, chair_mesh):
    same = shape_mesh("a red chair", shape_model=text_model, seed=0, steps=STEPS)
    np.testing.assert_array_equal(same.vertices, chair_mesh.vertices)
    builtin = shape_mesh("round table", seed=2, steps=8, n_points=1024)
    assert is_closed(builtin) and builtin.visual.uv.shape == (len(builtin.vertices), 2)
    assert_normalized(builtin.vertices)


def test_image_model_takes_a_picture(image_model, text_model):
    picture = np.zeros((48, 40, 3), np.uint8)
    picture[8:40, 10:30] = (200, 120, 40)
    mesh = image_model.mesh(picture, seed=0, steps=STEPS)
    assert image_model.kind == "image" and is_closed(mesh)
    assert_normalized(mesh.vertices)
    again = image_model.mesh(picture.astype(np.float32) / 255, seed=0, steps=STEPS)
    np.testing.assert_array_equal(again.vertices, mesh.vertices)
    # Grey, RGBA and PIL pictures are the same RGB condition.
    rgba = np.concatenate([picture, np.full((48, 40, 1), 255, np.uint8)], axis=-1)
    for other in (rgba, Image.fromarray(picture)):
        assert np.array_equal(np.asarray(image_model._condition(other)), picture)
    assert image_model._condition(picture[..., 0]).mode == "RGB"
    with pytest.raises(InvalidParameterError, match="picture"):
        image_model.mesh("a red chair")
    with pytest.raises(InvalidParameterError, match="text"):
        text_model.mesh(picture)


def test_missing_or_wrong_models_say_what_to_do(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download openai/shap-e"):
        load_shape_model("openai/shap-e")
    (tmp_path / "not_shap_e").mkdir()
    with pytest.raises(GeneratorKindError, match="not a Shap-E pipeline"):
        load_shape_model(str(tmp_path / "not_shap_e"))
    with pytest.raises(ModelNotFoundError, match="No model at"):
        load_shape_model(str(tmp_path / "nowhere"))


def test_builtin_model_is_unchanged():
    model = load_shape_model()
    assert isinstance(model, ShapeModel) and load_shape_model("builtin") is model
    assert not getattr(model, "open_vocabulary", False)
    np.testing.assert_array_equal(
        generate_shape("tall chair", n_points=256, seed=5, steps=6),
        generate_shape("tall chair", n_points=256, seed=5, steps=6, shape_model="builtin"),
    )
    assert meshdream.shapes.shape_mesh is shape_mesh


def test_a_fine_field_is_meshed_coarser_not_resampled():
    """Over the face budget, marching cubes runs on every k-th sample of the same field: closed, still the sphere."""
    from meshdream.shapes.shap_e import _march

    g = np.linspace(-1, 1, 128)
    sdf = 0.5 - np.linalg.norm(np.stack(np.meshgrid(g, g, g, indexing="ij")), axis=0)
    fine, coarse = _march(sdf), _march(sdf, face_budget=2000)
    assert len(coarse.faces) <= 2000 < len(fine.faces)
    assert coarse.is_watertight and coarse.volume > 0
    np.testing.assert_allclose(np.linalg.norm(coarse.vertices, axis=1), 0.5, atol=0.01)


def test_finish_mesh_closes_what_it_cannot_fill():
    """An open tube (holes too large to fill) is re-meshed from its surface: closed, normalized, unwrapped."""
    from meshdream.shapes.meshing import finish_mesh

    tube = trimesh.creation.cylinder(radius=0.3, height=1.0, sections=32)
    side = np.abs(tube.face_normals[:, 2]) < 0.5
    tube = trimesh.Trimesh(tube.vertices, tube.faces[side])
    assert not tube.is_watertight
    done = finish_mesh(tube)
    assert done.metadata["finish_mesh"] == {"remeshed": True, "closed": True}
    assert is_closed(done) and done.visual.uv.shape == (len(done.vertices), 2)
    assert_normalized(done.vertices)
