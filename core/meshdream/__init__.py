"""MeshDream core: texture 3D meshes and generate shapes with diffusion models, on your own GPU or CPU."""

from .create import CreateResult, create_asset
from .errors import (
    CameraError,
    CancelledError,
    InvalidMeshError,
    InvalidParameterError,
    MeshDreamError,
    MeshDreamWarning,
    MeshFileNotFoundError,
    OutputExistsError,
    OutputWriteError,
    UnsupportedFormatError,
)
from .generators import GenerationRequest, Generator, GeneratorKindError, ModelNotFoundError, load_generator
from .generators.material_models import MaterialModel, MaterialViews, load_material_model
from .geometry import (
    BakeOperator,
    BakeResult,
    Camera,
    MeshInfo,
    UVMaps,
    ViewMaps,
    bake,
    bake_operator,
    dilate,
    load_mesh,
    mesh_info,
    orbit_cameras,
    render,
    render_texture,
    save_textured,
    uv_maps,
)
from .progress import CancelToken, Progress
from .shapes import generate_shape, points_to_mesh, shape_categories, shape_mesh
from .texturing import TextureResult, inpaint_uv, restyle_texture, seamless_texture, texture_mesh
from .texturing.materials import bake_materials
from .texturing.upscale import upscale_texture

__version__ = "0.1.0"

__all__ = [
    "CreateResult",
    "create_asset",
    "generate_shape",
    "points_to_mesh",
    "shape_categories",
    "shape_mesh",
    "BakeOperator",
    "BakeResult",
    "Camera",
    "MeshInfo",
    "CameraError",
    "CancelToken",
    "CancelledError",
    "GenerationRequest",
    "Generator",
    "GeneratorKindError",
    "InvalidMeshError",
    "ModelNotFoundError",
    "TextureResult",
    "MaterialModel",
    "MaterialViews",
    "bake_materials",
    "load_material_model",
    "inpaint_uv",
    "load_generator",
    "restyle_texture",
    "seamless_texture",
    "texture_mesh",
    "upscale_texture",
    "InvalidParameterError",
    "MeshDreamError",
    "MeshDreamWarning",
    "MeshFileNotFoundError",
    "OutputExistsError",
    "OutputWriteError",
    "Progress",
    "UVMaps",
    "UnsupportedFormatError",
    "ViewMaps",
    "bake",
    "bake_operator",
    "dilate",
    "load_mesh",
    "mesh_info",
    "orbit_cameras",
    "render",
    "render_texture",
    "save_textured",
    "uv_maps",
]
