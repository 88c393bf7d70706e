"""Shape generation: procedural training data, a latent point-cloud diffusion model, open-vocabulary Shap-E
(through diffusers), and points -> closed UV mesh."""

from .generate import generate_shape, parse_prompt, shape_categories, shape_mesh
from .meshing import is_closed, points_to_mesh
from .sampler import ShapeModelNotFoundError, load_shape_model

__all__ = [
    "ShapeModelNotFoundError",
    "generate_shape",
    "is_closed",
    "load_shape_model",
    "parse_prompt",
    "points_to_mesh",
    "shape_categories",
    "shape_mesh",
]
