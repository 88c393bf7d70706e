"""What texturing returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry import Camera


@dataclass
class TextureResult:
    """A texture for the UV layout of the mesh it was made on (texture_mesh, restyle_texture), and how it was made.

    texture: (S, S, 3) float32 in [0, 1], OBJ convention (v = 0 is the bottom row, geometry/texture.py), S the
        texture size; unseen texels inpainted, except with strategy "project" (one view: inpaint_uv is yours to
        call). With pages (`textures`), their atlas side by side (geometry/pages.py), which `weight` follows too.
    weight: (S, S) float32 bake confidence, the summed view weights (cos(view angle)^p times pixel support) of
        each texel; 0 where no generated view saw it: `weight > 0` is what was generated rather than inpainted.
    views: the generated views in the order they were made, (Camera in the mesh's normalized frame, (H, W, 3)
        float32 image in [0, 1]); what was baked, for previews and checks.
    timings: seconds per stage ("views", "denoise", "bake", "inpaint", ...: texturing/common.py STAGE_KINDS), per
        kind ("setup", "geometry", "model") and "total", the whole call.
    strategy: how it was made: "sync", "sequential" or "project", "+refine" after a refine pass.
    textures: one (texture_size, texture_size, 3) image per page where the texture has pages (materials
        textured apart, UDIM tiles), keyed by material name or tile ("1001", ...); empty otherwise. save_textured
        takes it in place of `texture`.
    maps: the PBR maps when made with pbr=True (see bake_materials), else empty: "base_color" (the very array
        `texture` holds), "roughness" and "metallic" (S, S) float32 in [0, 1] (glTF's perceptual roughness and
        metalness), "normal" (S, S, 3) float32 tangent-space normal map (MikkTSpace, OpenGL +Y as glTF and Blender
        read it) encoded as an image, rgb = n * 0.5 + 0.5. All align texel for texel with `texture` (an atlas of the
        pages where it has pages).
    page_maps: the maps of each page, {page name: {map name: array}}, keyed like `textures`; empty without pages.
    save_textured takes the whole result and writes every map.
    """

    texture: np.ndarray
    weight: np.ndarray
    views: list[tuple[Camera, np.ndarray]]
    timings: dict[str, float] = field(default_factory=dict)
    strategy: str = "sync"
    textures: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    page_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
