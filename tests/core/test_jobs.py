"""The one job table (meshdream.jobs): settings come from each kind's core function, limits name the field."""

from __future__ import annotations

import inspect

import pytest
from meshdream.errors import InvalidParameterError
from meshdream.jobs import KINDS, Limits, job_kind


def test_settings_are_the_core_functions_keywords_less_what_the_job_fills():
    texture = KINDS["texture"]
    params = set(inspect.signature(texture.call).parameters)
    assert set(texture.settings) == params - set(texture.inputs) - {"progress", "cancel"}
    assert {"n_views", "steps", "per_material"} <= set(texture.settings) and "mesh" not in texture.settings
    project = KINDS["project"]
    assert project.call is texture.call and "strategy" not in project.settings and "n_views" not in project.settings
    assert "device" not in KINDS["upscale"].settings and "upscaler" in KINDS["upscale"].settings
    assert {k.name: k.model for k in KINDS.values()}["inpaint"] == "optional"


def test_unknown_settings_and_kinds_are_named_with_what_there_is():
    with pytest.raises(InvalidParameterError, match=r"line 3: unknown setting 'stepz'; known for shape jobs: .*steps"):
        KINDS["shape"].check_settings({"stepz": 3}, "line 3")
    with pytest.raises(InvalidParameterError, match="kind 'paint' is unknown; use one of texture, restyle, upscale"):
        job_kind("paint", ("texture", "restyle", "upscale"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"steps": -5}, "settings.steps: -5 is out of range; this server takes 1 to 200 (serve --max-steps)"),
        ({"n_views": 0}, "settings.n_views: 0 is out of range"),
        ({"n_points": 10**9}, "(serve --max-points)"),
        ({"texture_size": 1000}, "settings.texture_size: Texture size 1000 must be a positive power of two"),
        ({"texture_size": 8192}, "1 to 4096 (serve --max-texture-size)"),
        ({"steps": 2.5}, "settings.steps: 2.5 is not a whole number"),
        ({"view_resolution": 1024, "refine_scale": 4}, "4096 px, over this server's limit of 2048"),
    ],
)
def test_limits_name_the_setting_and_the_flag(settings, message):
    with pytest.raises(InvalidParameterError) as err:
        Limits().check(settings)
    assert message in str(err.value)


def test_limits_pass_what_fits_and_settings_left_out():
    Limits().check({"steps": 200, "texture_size": 4096, "n_views": 64, "view_resolution": None, "guidance": 99.0})
    Limits(steps=10).check({"steps": 10})


def test_create_jobs_take_create_assets_keywords_and_the_shape_steps_are_bounded():
    create = KINDS["create"]
    assert {"shape_model", "shape_steps", "face_budget", "n_views", "pbr"} <= set(create.settings)
    assert not {"prompt", "generator", "progress"} & set(create.settings) and create.model == "required"
    with pytest.raises(InvalidParameterError, match=r"settings.shape_steps: 500 is out of range.*--max-steps"):
        Limits().check({"shape_steps": 500})
