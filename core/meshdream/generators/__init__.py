"""Texture generators: the Generator interface, the shared sampler, diffusers-backed models, model loading."""

from .base import GenerationRequest, Generator, GeneratorKindError, ModelNotFoundError
from .loading import list_cached_models, load_generator
from .sampling import sample

__all__ = [
    "GenerationRequest",
    "Generator",
    "GeneratorKindError",
    "ModelNotFoundError",
    "list_cached_models",
    "load_generator",
    "sample",
]
