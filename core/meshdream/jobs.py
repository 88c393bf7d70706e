"""One table of job kinds, read by the server (wire schema and worker), the batch engine and the command line.

Each kind names the core function it calls, which of that function's parameters the job fills itself (the
mesh, images, the model: its inputs; every other keyword is a setting a caller may send), whether it takes a
texture model, and what it returns. Settings are checked against the function's signature, so a keyword the
core gains is a setting everywhere at once; `Limits` are the sizes a server refuses at submit, before anything
is allocated. Adding a kind is one entry in KINDS. Light to import: functions are imported when first called.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Callable, Literal, Mapping, Optional

from .errors import InvalidParameterError
from .presets import PRESET_SIZES, with_preset

# What a kind's function returns, which decides what a job's result holds.
TEXTURE_RESULT, TEXTURE, POINTS, CREATE_RESULT = "texture_result", "texture", "points", "create_result"


@dataclass(frozen=True)
class JobKind:
    name: str
    function: str  # "module:attribute" inside meshdream
    inputs: tuple[str, ...]  # parameters the job fills itself; the others are settings
    model: Literal["required", "optional", "none"]  # a texture generator, passed as generator=
    returns: str  # TEXTURE_RESULT (a TextureResult), TEXTURE (an (S, S, 3) image), POINTS ((N, 3)) or CREATE_RESULT
    # (a CreateResult: a new mesh and its TextureResult)
    fixed: Mapping[str, Any] = field(default_factory=dict)  # settings the kind sets itself
    doc: str = ""

    @property
    def call(self) -> Callable:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(f"meshdream.{module}"), name)

    @cached_property
    def settings(self) -> tuple[str, ...]:
        """The keywords a caller may set: the function's, less the inputs and what the kind fixes."""
        taken = set(self.inputs) | set(self.fixed) | {"progress", "cancel"}
        params = inspect.signature(self.call).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in params if p.kind in kinds and p.name not in taken)

    def default(self, name: str) -> Any:
        """The function's default for keyword `name` (what a job that leaves it out gets)."""
        return inspect.signature(self.call).parameters[name].default

    def check_settings(self, settings: Mapping[str, Any], where: str = "settings") -> dict:
        """`settings` as a dict, or InvalidParameterError naming an unknown one and the known ones."""
        unknown = sorted(set(settings) - set(self.settings))
        if unknown:
            s = "s" if len(unknown) > 1 else ""
            raise InvalidParameterError(
                f"{where + ': ' if where else ''}unknown setting{s} {', '.join(map(repr, unknown))}; "
                f"known for {self.name} jobs: {', '.join(self.settings)}."
            )
        return dict(settings)


_TEXTURE_INPUTS = (
    "mesh",
    "prompt",
    "generator",
    "cameras",
    "init_image",
    "reference_image",
    "inpaint_generator",
    "uv_set",  # the mesh's own (a job loads its mesh before the call)
)

KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            "texture",
            "texturing:texture_mesh",
            _TEXTURE_INPUTS,
            "required",
            TEXTURE_RESULT,
            doc="a new texture from a prompt, through views around the mesh",
        ),
        JobKind(
            "project",
            "texturing:texture_mesh",
            (*_TEXTURE_INPUTS, "n_views"),
            "required",
            TEXTURE_RESULT,
            fixed={"strategy": "project"},
            doc="what one camera (a viewport) sees, optionally img2img from its image",
        ),
        JobKind(
            "inpaint",
            "texturing:inpaint_uv",
            ("mesh", "texture", "mask", "generator"),
            "optional",
            TEXTURE,
            doc="masked texels filled and seams smoothed (harmonic fill without a model)",
        ),
        JobKind(
            "restyle",
            "texturing:restyle_texture",
            ("mesh", "texture", "prompt", "generator", "reference_image"),
            "required",
            TEXTURE_RESULT,
            doc="a texture the mesh has, re-denoised toward a prompt",
        ),
        JobKind(
            "upscale",
            "texturing.upscale:upscale_texture",
            ("mesh", "texture", "device"),  # the upscaler loads where the server / batch worker runs
            "none",
            TEXTURE,
            doc="a texture the mesh has, 2x or 4x, chart by chart",
        ),
        JobKind("shape", "shapes:generate_shape", ("prompt",), "none", POINTS, doc="a point cloud of a shape"),
        JobKind(
            "create",
            "create:create_asset",
            ("prompt", "generator"),
            "required",
            CREATE_RESULT,
            doc="a closed, textured mesh from a sentence ('a tall oak chair')",
        ),
    )
}


def job_kind(name: str, allowed: Optional[tuple[str, ...]] = None, where: str = "kind") -> JobKind:
    """The kind called `name`, or InvalidParameterError naming the kinds there are (among `allowed`)."""
    names = allowed or tuple(KINDS)
    if name not in names:
        raise InvalidParameterError(f"{where} {name!r} is unknown; use one of {', '.join(names)}.")
    return KINDS[name]


@dataclass(frozen=True)
class Limits:
    """The largest sizes a server takes (`meshdream serve --max-...`), checked at submit so a job that would grow
    the worker past its memory is refused before anything is allocated. Each applies to every setting of that
    name, whatever the kind."""

    texture_size: int = 4096  # any texture a job takes or makes, per side (an upscale's output too)
    view_resolution: int = 2048  # view pixels per side (a camera's own size, and views refined by refine_scale)
    n_views: int = 64
    n_points: int = 100_000  # the shape model's own bound
    steps: int = 200  # denoising steps
    faces: int = 2_000_000  # faces of a mesh sent as arrays; a shape mesh's face_budget
    grid: int = 512  # points_to_mesh's resolution (voxels across the shape)
    iterations: int = 200  # points_to_mesh's smooth / project rounds

    # setting name -> the limit that bounds it
    BOUNDS = {
        "texture_size": "texture_size",
        "view_resolution": "view_resolution",
        "n_views": "n_views",
        "n_points": "n_points",
        "steps": "steps",
        "shape_steps": "steps",
        "face_budget": "faces",
        "resolution": "grid",
        "smooth": "iterations",
        "project": "iterations",
    }
    FLAGS = {"n_views": "--max-views", "n_points": "--max-points"}

    def flag(self, limit: str) -> str:
        return self.FLAGS.get(limit, "--max-" + limit.replace("_", "-"))

    def check(self, settings: Mapping[str, Any], where: str = "settings") -> None:
        """InvalidParameterError naming the first setting that is not a whole number within its limit (with the
        sizes a `preset` fills counted as set)."""
        if settings.get("preset") is not None:
            settings = {**settings, **with_preset(settings["preset"], **{k: settings.get(k) for k in PRESET_SIZES})}
        for name, limit in self.BOUNDS.items():
            value = settings.get(name)
            if value is None:
                continue
            self.check_size(value, limit, f"{where}.{name}")
        if "texture_size" in settings and settings["texture_size"] is not None:
            from .geometry.texture import check_texture_size

            try:
                check_texture_size(settings["texture_size"])
            except InvalidParameterError as exc:
                raise InvalidParameterError(f"{where}.texture_size: {exc}") from None
        scale, views = settings.get("refine_scale"), settings.get("view_resolution")
        if isinstance(scale, int) and isinstance(views, int) and scale * views > self.view_resolution:
            raise InvalidParameterError(
                f"{where}.refine_scale: views refined {scale}x at {views} px are {scale * views} px, over this "
                f"server's limit of {self.view_resolution} (serve --max-view-resolution)."
            )

    def check_size(self, value: Any, limit: str, where: str) -> None:
        top = getattr(self, limit)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterError(f"{where}: {value!r} is not a whole number.")
        if not 1 <= value <= top:
            raise InvalidParameterError(
                f"{where}: {value} is out of range; this server takes 1 to {top} (serve {self.flag(limit)})."
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
