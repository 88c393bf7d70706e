"""The MaterialModel interface: what turns views of a finished base colour into PBR estimates (issue 27).

A material model is a part you load, like a generator: the built-in one (trained on MeshDream's procedural
materials) or diffusers' Marigold pipelines from the local cache. Every map comes from the *finished* base
colour, in one frame convention: a model that reads the texture itself (MaterialModel.reads_texture) gets it as
one view; a model that reads views gets views of it, baked back with the same cameras and weights as the base
colour. So every map agrees texel for texel and views cannot disagree.
"""

from __future__ import annotations

import os

from .material_base import MAP_NAMES, MaterialModel, MaterialViews, check_material_views

__all__ = ["MAP_NAMES", "MaterialModel", "MaterialViews", "check_material_views", "load_material_model"]


def load_material_model(spec: str | os.PathLike = "builtin", device: str = "auto") -> MaterialModel:
    """ "builtin" (MeshDream's own, offline), or a Marigold intrinsics / normals pipeline (a cached Hugging Face id
    or a local diffusers folder; nothing is downloaded)."""
    if os.fspath(spec) == "builtin":
        from .builtin.material_model import load_builtin_material_model

        return load_builtin_material_model(device=device)
    from .marigold import load_marigold

    return load_marigold(spec, device=device)
