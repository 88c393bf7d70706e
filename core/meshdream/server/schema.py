"""The /v1 wire format: pydantic request models, and the array / PNG (de)serialization both directions use.

Arrays travel as {"dtype": "<f4", "shape": [...], "data": base64 of the raw bytes} (plain nested JSON lists are
accepted too); images as {"png": base64 of an image file} or as an array (uint8, or float in [0, 1]); files as
{"name": "spot.obj", "data": base64}. Decoding happens inside validation, so a bad value answers 422 naming
its field. Settings are keyword arguments of the core function a job calls, checked against its signature, so
a setting the core gains works here without a server change.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import math
import tempfile
import typing
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ..errors import InvalidParameterError
from ..generators import load_generator
from ..generators.material_models import MAP_NAMES
from ..geometry import mesh_info, save_textured
from ..geometry.mesh_io import READ_FORMATS, to_user_frame
from ..geometry.texture import check_texture_size
from ..images import contact_sheet, to_uint8
from ..jobs import KINDS, Limits
from ..shapes import points_to_mesh
from ..texturing import TextureResult
from ..texturing.upscale import SCALES
from .jobs import CameraInput, Job, JobResult, MeshInput, ModelSpec, Request
from .models import ModelCatalog

# --- codecs ---------------------------------------------------------------------------------------------------


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"is not valid base64 ({exc})") from None


def encode_array(a: np.ndarray) -> dict:
    """Little-endian raw bytes, whatever the machine."""
    a = np.ascontiguousarray(a)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def encode_png(image: np.ndarray) -> str:
    """(H, W[, 3]) float in [0, 1] or uint8 -> base64 PNG (fast compression: these are transfers, not archives)."""
    from PIL import Image

    a = image if image.dtype == np.uint8 else to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode()


class ArrayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dtype: str
    shape: list[Annotated[int, Field(ge=0)]]
    data: str

    def array(self) -> np.ndarray:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"dtype {self.dtype!r} is not a numpy dtype (e.g. '<f4', '<i4', '|u1')") from None
        if dtype.kind not in "biuf":
            raise ValueError(f"dtype {self.dtype!r} must be a bool, integer or float type")
        raw = b64decode(self.data)
        count = math.prod(self.shape)
        if len(raw) != count * dtype.itemsize:
            need = count * dtype.itemsize
            raise ValueError(f"data has {len(raw)} bytes but shape {self.shape} of {self.dtype} needs {need}")
        return np.frombuffer(raw, dtype).reshape(self.shape).astype(dtype.newbyteorder("="))


def _to_array(value) -> np.ndarray:
    if isinstance(value, ArrayIn):
        return value.array()
    a = np.asarray(value)  # nested lists; ragged ones raise ValueError, which pydantic reports
    if a.dtype.kind not in "biuf":
        raise ValueError("must hold numbers only")
    return a


def shaped(shape: tuple[Optional[int], ...], dtype) -> AfterValidator:
    """Check an array's shape (None = any length) and cast it."""

    def check(a: np.ndarray) -> np.ndarray:
        if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"must have shape {want}, got {a.shape}")
        if np.dtype(dtype).kind in "iu" and a.dtype.kind not in "iu":
            raise ValueError(f"must hold integers (JSON integers, or an integer dtype such as '<i4'), got {a.dtype}")
        if np.dtype(dtype).kind == "f" and not np.isfinite(a).all():
            raise ValueError("holds NaN or infinite values")
        return a.astype(dtype, copy=False)

    return AfterValidator(check)


ArrayArg = Annotated[Union[ArrayIn, list], AfterValidator(_to_array)]


class PngIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    png: str  # base64 of a PNG (or any image file Pillow reads)

    def image(self, max_side: int) -> np.ndarray:
        """Decoded only once its header says it fits `max_side` (a small PNG may unpack to gigabytes)."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(b64decode(self.png))) as img:
                if max(img.size) > max_side:
                    raise ValueError(
                        f"is {img.size[0]} x {img.size[1]} pixels, over this server's limit of {max_side} per side "
                        "(serve --max-texture-size)"
                    )
                rgba = img.convert("RGBA") if "A" in img.getbands() or img.mode == "P" else img.convert("RGB")
                return np.asarray(rgba, np.float32) / 255
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
            raise ValueError(f"is not a readable image ({exc})") from None


def _to_image(value, info: ValidationInfo) -> np.ndarray:
    """(H, W, C) float32 in [0, 1], at most the server's texture size per side."""
    max_side = _context(info).limits.texture_size
    a = value.image(max_side) if isinstance(value, PngIn) else _to_array(value)
    if a.ndim >= 2 and max(a.shape[:2]) > max_side:
        raise ValueError(f"is {a.shape[1]} x {a.shape[0]}, over this server's limit of {max_side} per side")
    if a.dtype == np.uint8:
        a = a / 255.0
    a = a.astype(np.float32)
    a = a[..., None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"must be an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("holds NaN or infinite values")
    return a


ImageArg = Annotated[Union[PngIn, ArrayIn, list], AfterValidator(_to_image)]

# --- settings: keyword arguments of the core function a job calls -----------------------------------------------


@lru_cache(maxsize=None)
def _parameters(fn: Callable) -> dict[str, Optional[TypeAdapter]]:
    """Each keyword parameter's validator from its annotation (None where pydantic cannot check that type)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve at run time: check the names only
        hints = {}
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        try:
            out[name] = TypeAdapter(hints[name]) if name in hints else None
        except Exception:  # e.g. np.ndarray or torch.dtype: the core checks those itself
            out[name] = None
    return out


def check_settings(settings: dict, fn: Callable, reserved: frozenset[str]) -> dict:
    """Validate `settings` against `fn`'s keyword parameters, except those the job fills itself."""
    params = {k: v for k, v in _parameters(fn).items() if k not in reserved}
    out = {}
    for name, value in settings.items():
        if name not in params:
            raise ValueError(f"unknown setting {name!r}; {fn.__name__} takes {', '.join(sorted(params))}")
        try:
            out[name] = value if params[name] is None else params[name].validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"{name}: {exc.errors()[0]['msg']}") from None
    return out


def settings_of(fn: Callable, *reserved: str) -> AfterValidator:
    return AfterValidator(lambda s: check_settings(s, fn, frozenset(reserved)))


def settings_for(kind: str) -> AfterValidator:
    """A job's settings: names from its kind in meshdream.jobs.KINDS (the one check the batch engine makes too),
    then each value against its annotation in the kind's function."""
    job_kind = KINDS[kind]

    def check(settings: dict) -> dict:
        job_kind.check_settings(settings, where="")  # InvalidParameterError is a ValueError: answered 422
        return check_settings(settings, job_kind.call, frozenset(job_kind.inputs))

    return AfterValidator(check)


@dataclass(frozen=True)
class Submit:
    """What checking a job needs from its server (the validation context): the model for jobs that name none,
    the size limits and the models it offers."""

    default_model: ModelSpec = ModelSpec()
    limits: Limits = Limits()
    catalog: ModelCatalog = ModelCatalog()

    def model(self, value: Union[None, str, "ModelIn"], where: str, default: Optional[ModelSpec] = None):
        """The job's model spec, every name in it one the server offers (InvalidParameterError if not)."""
        if value is None:
            return default
        spec = ModelSpec(value) if isinstance(value, str) else value.model_spec()
        if spec == self.default_model:
            return spec
        options = tuple(
            (k, self.catalog.resolve_option(v, f"{where}.options.{k}") if k in MODEL_OPTIONS else v)
            for k, v in spec.options
        )
        return ModelSpec(self.catalog.resolve(spec.spec, where), options)


# load_generator options that name other models (files, folders, cached ids): only ones the server offers.
MODEL_OPTIONS = ("controlnet", "base", "lora", "ip_adapter", "image_encoder")


def _context(info: ValidationInfo) -> Submit:
    return info.context if isinstance(info.context, Submit) else Submit()


# --- requests ---------------------------------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Self-contained formats only: a .gltf names other files, which would be looked up on the server's disk.
UPLOAD_FORMATS = tuple(f for f in READ_FORMATS if f != ".gltf")


class FileIn(Strict):
    name: str = Field(description=f"file name; its suffix picks the format ({' '.join(UPLOAD_FORMATS)})")
    data: Annotated[str, AfterValidator(b64decode)]  # base64 in the request; the file's bytes once validated

    @model_validator(mode="after")
    def _suffix(self):
        if Path(self.name).suffix.lower() not in UPLOAD_FORMATS:
            raise ValueError(f"file {self.name!r} is not a format the server takes ({', '.join(UPLOAD_FORMATS)})")
        return self


class MeshIn(Strict):
    """Arrays in your coordinates (vertices (N, 3), faces (F, 3), optional per-corner UVs (F, 3, 2)) or a file."""

    vertices: Optional[Annotated[ArrayArg, shaped((None, 3), np.float64)]] = None
    faces: Optional[Annotated[ArrayArg, shaped((None, 3), np.int64)]] = None
    uvs: Optional[Annotated[ArrayArg, shaped((None, 3, 2), np.float64)]] = None
    file: Optional[FileIn] = None
    unwrap: Literal["auto", "always", "never"] = "auto"
    uv_set: int = Field(0, ge=0, description="UV set of a .glb file to texture (TEXCOORD_n; Blender: the active map)")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.file is None) == (self.vertices is None or self.faces is None):
            raise ValueError("give either 'file' or both 'vertices' and 'faces'")
        if self.file is None:
            if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
                raise ValueError(f"faces index vertices outside 0..{len(self.vertices) - 1}")
            if self.uvs is not None and len(self.uvs) != len(self.faces):
                raise ValueError(f"uvs must have one (3, 2) entry per face: {len(self.uvs)} for {len(self.faces)}")
        return self

    def input(self, limits: Limits) -> MeshInput:
        if self.file is None and not len(self.faces):
            raise InvalidParameterError("mesh.faces: the mesh has no faces; send a mesh with at least one triangle.")
        if self.file is None and len(self.faces) > limits.faces:
            raise InvalidParameterError(
                f"mesh.faces: {len(self.faces)} faces, over this server's limit of {limits.faces} (serve --max-faces)."
            )
        if self.file is not None:
            return MeshInput(file_name=self.file.name, file_data=self.file.data, unwrap=self.unwrap, uv_set=self.uv_set)
        return MeshInput(self.vertices, self.faces, self.uvs, unwrap=self.unwrap, uv_set=self.uv_set)


Pixels = Annotated[int, Field(gt=0, le=16384)]


class CameraIn(Strict):
    view: Annotated[ArrayArg, shaped((4, 4), np.float64)] = Field(description="4x4 world-to-camera (view) matrix")
    fov: float = Field(40.0, gt=0, lt=180, description="degrees across the larger image side")
    resolution: Optional[Union[Pixels, tuple[Pixels, Pixels]]] = Field(
        None,
        description="pixels: square, or (width, height); none: the job's view resolution (settings.view_resolution, "
        "else the model's own) on the larger side, at `aspect`",
    )
    aspect: Optional[float] = Field(None, ge=0.01, le=100, description="width / height without a resolution (1)")

    @model_validator(mode="after")
    def _one_size(self):
        if self.resolution is not None and self.aspect is not None:
            raise ValueError("give 'resolution' or 'aspect', not both: a resolution fixes the aspect")
        return self

    def input(self, limits: Limits, where: str) -> CameraInput:
        for side in (self.resolution,) if isinstance(self.resolution, int) else self.resolution or ():
            limits.check_size(side, "view_resolution", f"{where}.resolution")
        return CameraInput(self.view, self.fov, self.resolution, self.aspect or 1.0)


class ModelIn(Strict):
    spec: str = Field(description="a model the server lists (GET /v1/models): builtin, a cached Hugging Face id, ...")
    options: Annotated[dict[str, Any], settings_of(load_generator, "spec")] = {}

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.spec, tuple(sorted(self.options.items())))


class TextureJobIn(Strict):
    kind: Literal["texture"]
    mesh: MeshIn
    prompt: str
    model: Union[str, ModelIn, None] = None
    inpaint_model: Union[str, ModelIn, None] = None
    cameras: Optional[list[CameraIn]] = None
    reference_image: Optional[ImageArg] = None
    settings: Annotated[dict[str, Any], settings_for("texture")] = {}

    def request(self, ctx: Submit) -> Request:
        return Request(
            self.kind,
            self.settings,
            {"prompt": self.prompt, "reference_image": self.reference_image},
            mesh=self.mesh.input(ctx.limits),
            model=ctx.model(self.model, "model", ctx.default_model),
            inpaint_model=ctx.model(self.inpaint_model, "inpaint_model"),
            cameras=None if self.cameras is None else [c.input(ctx.limits, "cameras") for c in self.cameras],
        )


class ProjectJobIn(Strict):
    """One camera (e.g. the viewport), optionally img2img from `init_image` at settings.strength."""

    kind: Literal["project"]
    mesh: MeshIn
    prompt: str
    model: Union[str, ModelIn, None] = None
    camera: Optional[CameraIn] = None
    init_image: Optional[ImageArg] = None
    reference_image: Optional[ImageArg] = None
    settings: Annotated[dict[str, Any], settings_for("project")] = {}

    def request(self, ctx: Submit) -> Request:
        return Request(
            self.kind,
            self.settings,
            {"prompt": self.prompt, "init_image": self.init_image, "reference_image": self.reference_image},
            mesh=self.mesh.input(ctx.limits),
            model=ctx.model(self.model, "model", ctx.default_model),
            cameras=None if self.camera is None else [self.camera.input(ctx.limits, "camera")],
        )


class InpaintJobIn(Strict):
    kind: Literal["inpaint"]
    mesh: MeshIn
    texture: ImageArg
    mask: Optional[ImageArg] = Field(None, description="white (> 0.5) = fill; default: transparent texels")
    model: Union[str, ModelIn, None] = Field(None, description="an inpainting model; none: harmonic fill")
    settings: Annotated[dict[str, Any], settings_for("inpaint")] = {}

    @model_validator(mode="after")
    def _mask_source(self):
        if self.mask is None and self.texture.shape[-1] != 4:
            raise ValueError("give a 'mask' or a texture with an alpha channel (transparent texels are filled)")
        return self

    def request(self, ctx: Submit) -> Request:
        mask = self.texture[..., 3] < 0.5 if self.mask is None else self.mask[..., 0] > 0.5
        inputs = {"texture": self.texture[..., :3], "mask": mask}
        return Request(
            self.kind, self.settings, inputs, mesh=self.mesh.input(ctx.limits), model=ctx.model(self.model, "model")
        )


def _own_texture(a: np.ndarray) -> np.ndarray:
    """A texture the mesh already has, as (S, S, 3): square and a power of two (what restyle and upscale take);
    an alpha channel is dropped and grey is spread to RGB, as images from DCC tools come."""
    height, width = a.shape[:2]
    if height != width:
        raise ValueError(f"must be square (one UV layout's texture), got {width} x {height}")
    check_texture_size(height)  # its InvalidParameterError is a ValueError: answered 422, naming the field
    return a[..., :3] if a.shape[-1] >= 3 else np.repeat(a, 3, axis=-1)


class OwnTextureJob(Strict):
    """A job on a texture the mesh already has: it belongs to the mesh's own UVs, which are never replaced."""

    mesh: MeshIn
    texture: Annotated[ImageArg, AfterValidator(_own_texture)]

    @model_validator(mode="after")
    def _own_uvs(self):
        if "unwrap" in self.mesh.model_fields_set and self.mesh.unwrap != "never":
            raise ValueError(
                f"mesh.unwrap {self.mesh.unwrap!r}: the texture is painted on the mesh's own UVs, which are kept; "
                "leave 'unwrap' out or set it to 'never'"
            )
        return self

    def mesh_input(self, limits: Limits) -> MeshInput:
        return replace(self.mesh.input(limits), unwrap="never")


class RestyleJobIn(OwnTextureJob):
    """The mesh's texture re-denoised toward `prompt`; settings.strength: 0 keeps it, 1 replaces it."""

    kind: Literal["restyle"]
    prompt: str
    model: Union[str, ModelIn, None] = None
    reference_image: Optional[ImageArg] = None
    settings: Annotated[dict[str, Any], settings_for("restyle")] = {}

    @model_validator(mode="after")
    def _strength(self):
        strength = self.settings.get("strength")
        if strength is not None and not 0.0 <= strength <= 1.0:
            raise ValueError(f"settings.strength {strength} must be in [0, 1]: 0 keeps the texture, 1 replaces it")
        return self

    def request(self, ctx: Submit) -> Request:
        return Request(
            self.kind,
            self.settings,
            {"texture": self.texture, "prompt": self.prompt, "reference_image": self.reference_image},
            mesh=self.mesh_input(ctx.limits),
            model=ctx.model(self.model, "model", ctx.default_model),
        )


class UpscaleJobIn(OwnTextureJob):
    """The mesh's texture 2x / 4x; settings.upscaler: one the server lists (GET /v1/models: "upscalers")."""

    kind: Literal["upscale"]
    settings: Annotated[dict[str, Any], settings_for("upscale")] = {}

    @model_validator(mode="after")
    def _scale(self):
        scale = self.settings.get("scale")
        if scale is not None and scale not in SCALES:
            raise ValueError(f"settings.scale {scale} is not supported; use {' or '.join(map(str, SCALES))}")
        return self

    def request(self, ctx: Submit) -> Request:
        settings = dict(self.settings)
        size = len(self.texture) * settings.get("scale", 2)
        if size > ctx.limits.texture_size:
            raise InvalidParameterError(
                f"settings.scale: the upscaled texture would be {size}² texels, over this server's limit of "
                f"{ctx.limits.texture_size} (serve --max-texture-size)."
            )
        if "upscaler" in settings:
            settings["upscaler"] = ctx.catalog.resolve_upscaler(settings["upscaler"], "settings.upscaler")
        return Request(self.kind, settings, {"texture": self.texture}, mesh=self.mesh_input(ctx.limits))


class ShapeJobIn(Strict):
    kind: Literal["shape"]
    prompt: Union[str, int] = Field(description="e.g. 'tall chair', a category name or its index")
    settings: Annotated[dict[str, Any], settings_for("shape")] = {}
    mesh: Union[bool, Annotated[dict[str, Any], settings_of(points_to_mesh, "points")]] = Field(
        False, description="true (or points_to_mesh settings): also return a closed, UV-unwrapped mesh"
    )

    def request(self, ctx: Submit) -> Request:
        mesh_settings = self.mesh if isinstance(self.mesh, dict) else ({} if self.mesh else None)
        if mesh_settings:
            ctx.limits.check(mesh_settings, "mesh")
        return Request(self.kind, self.settings, {"prompt": self.prompt}, mesh_settings=mesh_settings)


class CreateJobIn(Strict):
    """A closed, textured mesh from a sentence; the result carries the mesh (GLB, arrays) and its texture."""

    kind: Literal["create"]
    prompt: str = Field(description="e.g. 'a tall oak chair': a shape the shape model makes, and its material")
    model: Union[str, ModelIn, None] = None
    settings: Annotated[dict[str, Any], settings_for("create")] = {}

    def request(self, ctx: Submit) -> Request:
        model = ctx.model(self.model, "model", ctx.default_model)
        return Request(self.kind, self.settings, {"prompt": self.prompt}, model=model)


JOB_MODELS = (TextureJobIn, ProjectJobIn, InpaintJobIn, ShapeJobIn, RestyleJobIn, UpscaleJobIn, CreateJobIn)
assert {m.model_fields["kind"].annotation.__args__[0] for m in JOB_MODELS} == set(KINDS), "one wire model per kind"
JobIn = Annotated[Union[JOB_MODELS], Field(discriminator="kind")]


def job_request(job, ctx: Submit) -> Request:
    """The worker's request for a validated job: models resolved to ones the server offers, every size within
    its limits (InvalidParameterError naming the field otherwise), before anything is allocated."""
    ctx.limits.check(job.settings)
    request = job.request(ctx)
    gates = {"material_model": ctx.catalog.resolve_material_model, "shape_model": ctx.catalog.resolve_shape_model}
    for name, resolve in gates.items():
        spec = request.settings.get(name)
        if spec is not None:  # a model the server lists, like a generator (the worker loads it, keeps it)
            request = replace(request, settings={**request.settings, name: resolve(spec, f"settings.{name}")})
    return request


# --- responses --------------------------------------------------------------------------------------------------

# One part per PBR map (jobs with settings.pbr): "texture" is the base colour; each map is the texture's size.
MAP_PARTS = tuple(name for name in MAP_NAMES if name != "base_color")
RESULT_PARTS = ("texture", "glb", "weight", "seen", "mesh", "points", "views", *MAP_PARTS)
DEFAULT_PARTS = ("texture", "glb", "weight", "seen", "mesh", "points", *MAP_PARTS)


def status(job: Job, queue_position: Optional[int]) -> dict:
    """A job's progress as JSON (call with the worker's lock held)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "step": job.step,
        "total": job.total,
        "message": job.message,
        "error": job.error,
        "warnings": job.warnings,
        "queue_position": queue_position,
        "submitted": job.submitted,
        "started": job.started,
        "finished": job.finished,
        "cancel_step": job.cancel_step,
        "version": job.version,
        "expires": job.expires,
    }


def preview_png(job: Job) -> Optional[str]:
    """The views side by side: the finished result's, or while running the newest denoising preview (latent
    resolution, so a status poll stays cheap); None until there are any."""
    live, result = job.preview, job.result  # in this order: a job finishing meanwhile gives one or the other
    if result is not None:
        views = result.views
    else:
        views = [] if live is None else list(live.astype(np.float32) / 255)
    if not views:
        return None
    return encode_png(contact_sheet(views, columns=len(views)))


def _glb(result: JobResult) -> bytes:
    """The result in the caller's coordinates: textured via save_textured, or the bare shape mesh."""
    if result.texture is None:
        return to_user_frame(result.mesh).export(file_type="glb")
    with tempfile.TemporaryDirectory(prefix="meshdream-result-") as tmp:
        texture = result.textures or result.texture  # pages (materials, UDIM tiles), if any
        if result.maps:  # PBR: save_textured takes the maps (and their pages) from a TextureResult
            texture = TextureResult(
                result.texture,
                result.weight,
                [],
                textures=result.textures,
                maps=result.maps,
                page_maps=result.page_maps,
            )
        return save_textured(result.mesh, texture, Path(tmp) / "result.glb").read_bytes()


def encode_result(job: Job, parts: tuple[str, ...]) -> dict:
    r = job.result
    out: dict[str, Any] = {"id": job.id, "kind": job.kind, "timings": r.timings}
    if r.prompts:
        out["prompts"] = r.prompts
    if r.texture is not None and "texture" in parts:
        out["texture_png"] = encode_png(r.texture)
    for name in MAP_PARTS:
        if name in r.maps and name in parts:
            out[name + "_png"] = encode_png(r.maps[name])  # roughness, metallic: grey; normal: tangent space, +Y
    if r.weight is not None and "weight" in parts:
        out["weight"] = encode_array(r.weight.astype(np.float32))
    if r.weight is not None and "seen" in parts:
        out["seen"] = encode_array(r.weight > 0)
    if r.views and "views" in parts:
        out["views_png"] = [encode_png(v) for v in r.views]
    if r.points is not None and "points" in parts:
        out["points"] = encode_array(r.points.astype(np.float32))
    if r.mesh is not None and "glb" in parts:
        out["glb"] = base64.b64encode(_glb(r)).decode()
    if r.mesh is not None and "mesh" in parts:
        user = to_user_frame(r.mesh)
        out["mesh"] = {
            "vertices": encode_array(np.asarray(user.vertices, np.float32)),
            "faces": encode_array(np.asarray(user.faces, np.int32)),
            "uvs": encode_array(np.asarray(user.visual.uv, np.float32)[user.faces]),
            "unwrapped": mesh_info(r.mesh).unwrapped,
        }
    return out
