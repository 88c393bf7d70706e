"""create_asset (issue 28): a sentence split between the built-in shape and texture models, to a closed, textured
mesh; and `meshdream create` on the command line."""

from __future__ import annotations

import warnings

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream import CancelToken, InvalidParameterError, MeshDreamWarning
from meshdream.cli import main
from meshdream.create import split_prompt
from meshdream.generators.builtin.material_model import family_index
from meshdream.generators.builtin.materials import FAMILIES
from meshdream.generators.builtin.vocab import WORD_ID, parse
from meshdream.shapes import is_closed

from tests.conftest import khronos_issues

SMALL = dict(n_views=2, view_resolution=64, texture_size=64, steps=3, shape_steps=6, face_budget=3000)


@pytest.mark.parametrize(
    "sentence, shape, texture",
    [
        ("a tall oak chair", "tall chair", "oak"),
        ("A pine table", "table", "pine"),  # pine is the wood when another shape is named
        ("a pine tree", "pine tree", "green grass"),  # the tree's attribute when it is the shape; its usual look
        ("red velvet armchair", "arms chair", "red velvet"),
        ("two granite vases", "vase", "granite"),
        ("a round walnut table with stripes", "round table", "walnut stripes"),
    ],
)
def test_a_sentence_is_split_between_the_models(sentence, shape, texture):
    split = split_prompt(sentence)
    assert (split.shape, split.texture) == (shape, texture)
    assert split.unknown == (("two",) if "two" in sentence else ())


def test_material_synonyms_map_to_a_family_and_colour():
    ids, unknown = parse("oak")
    assert not unknown and ids == parse("wood")[0]
    assert parse("walnut")[0] == parse("wood brown")[0] and parse("gold")[0] == [WORD_ID["metal"], WORD_ID["gold"]]
    assert all(not parse(w)[1] for w in ("granite", "steel", "iron", "chrome", "velvet", "leather"))


def test_a_family_the_prompt_names_beats_the_one_a_material_word_implies():
    """ "gold tiles" are tiles in gold (the material model once read them as metal: bench pbr's roughness 0.3 off)."""
    assert parse("gold tiles")[0] == [WORD_ID["gold"], WORD_ID["tiles"]]
    assert parse("walnut bricks")[0] == [WORD_ID["brown"], WORD_ID["brick"]]
    assert parse("a gold ring")[0] == [WORD_ID["metal"], WORD_ID["gold"]]  # alone, the material's family stays
    assert family_index("gold grass") == 1 + FAMILIES.index("grass")


def test_shape_words_never_reach_the_texture_and_open_vocabulary_takes_the_rest():
    split = split_prompt("a tall chair and a lamp", texture_vocabulary=False)  # e.g. a Stable Diffusion texture
    assert split.shape == "tall chair" and split.texture == "wood" and split.unknown == ("lamp",)
    assert split_prompt("a weathered oak chair", texture_vocabulary=False).texture == "weathered oak"
    open_split = split_prompt("a tall oak dragon statue", open_vocabulary=True)
    assert (open_split.shape, open_split.texture) == ("a tall dragon statue", "oak")


def test_a_sentence_without_a_shape_is_one_error_naming_what_the_model_makes():
    with pytest.raises(InvalidParameterError, match=r"'an oak dragon'.*chair, table, stool.*tree"):
        meshdream.create_asset("an oak dragon", **SMALL)


def test_create_asset_makes_a_closed_textured_mesh_and_names_unknown_words_once(tmp_path):
    reports = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = meshdream.create_asset("a tall oak chair, sparkly and shiny", progress=reports.append, **SMALL)
    ours = [w for w in caught if issubclass(w.category, MeshDreamWarning)]
    assert len(ours) == 1 and "'sparkly', 'shiny'" in str(ours[0].message)
    assert (result.shape_prompt, result.texture_prompt) == ("tall chair", "oak")
    assert result.unknown_words == ("sparkly", "shiny")
    assert is_closed(result.mesh) and len(result.mesh.faces) <= 3000
    assert result.texture.texture.shape == (64, 64, 3) and result.texture.weight.max() > 0
    assert {"shape", "mesh", "unwrap", "texture"} <= set(result.timings)
    stages = [p.stage for p in reports]
    assert stages.index("mesh") > stages.index("denoise") and stages[-1] != "mesh"  # shape, then texture
    # The oak is wood-coloured: red above blue, as the built-in model's wood is.
    seen = result.texture.texture[result.texture.weight > 0]
    assert seen[:, 0].mean() > seen[:, 2].mean()
    out = meshdream.save_textured(result.mesh, result.texture, tmp_path / "chair.glb")
    glb = trimesh.load(out, force="mesh")
    assert glb.visual.material.baseColorTexture.size == (64, 64)
    issues = khronos_issues(out)
    assert issues["numErrors"] == 0, issues["messages"]


def test_pbr_and_cancel_pass_through():
    result = meshdream.create_asset("a short metal mug", pbr=True, **SMALL)
    assert {"roughness", "metallic", "normal"} <= set(result.texture.maps)
    assert result.texture.maps["metallic"].mean() > 0.3  # the built-in material model reads metal as metallic
    token = CancelToken()

    def stop_in_texture(p):
        if p.stage == "denoise" and p.total == SMALL["steps"]:  # the texture's denoise (the shape's has 6 steps)
            token.cancel()

    with pytest.raises(meshdream.CancelledError):
        meshdream.create_asset("a chair", progress=stop_in_texture, cancel=token, **SMALL)


def test_cli_create_prints_the_split_and_writes_the_glb(tmp_path, capsys):
    out = tmp_path / "chair.glb"
    args = ["create", "an oak chair", "-o", str(out), "--views", "2", "--view-resolution", "64"]
    args += ["--texture-size", "64", "--steps", "3", "--shape-steps", "6", "--face-budget", "3000"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "shape: 'chair'" in text and "texture: 'oak'" in text and str(out) in text
    glb = trimesh.load(out, force="mesh")
    assert len(glb.faces) <= 3000
    assert main(["create", "a dragon", "-o", str(tmp_path / "d.glb")]) == 2
    assert "chair, table" in capsys.readouterr().err
    np.testing.assert_array_less(0, glb.extents)


def test_every_shape_has_a_usual_material_the_texture_model_knows():
    from meshdream.create import DEFAULT_MATERIAL
    from meshdream.shapes.procedural import CATEGORIES

    assert set(DEFAULT_MATERIAL) == set(CATEGORIES)
    assert all(not parse(material)[1] for material in DEFAULT_MATERIAL.values())
