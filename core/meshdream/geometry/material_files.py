"""PBR maps in files (issue 27): the images glTF and OBJ / MTL take, and the normals and MikkTSpace tangents a
normal map needs to be read as it was baked.

glTF: baseColorTexture, metallicRoughnessTexture (G roughness, B metallic), normalTexture, and per vertex NORMAL and
TANGENT (xyz unit, w = +1 / -1 the bitangent sign), the frame the normal map was baked in, so no viewer has to
guess it. Vertices are split where corners that share one have different tangent frames (MikkTSpace splits them).
"""

from __future__ import annotations

import json
import struct
from typing import Mapping

import numpy as np
import trimesh
from PIL import Image

from ..errors import InvalidParameterError
from .meshdata import mesh_data
from .texture import as_float_image

MAP_NAMES = ("base_color", "roughness", "metallic", "normal")
# File name suffix of each map's image beside the base colour's (OBJ / MTL), and the MTL statements that name it: the
# PBR extension's, and for the normal map also map_Bump, which Blender's OBJ importer (and exporter) use for it.
MAP_FILES = {
    "roughness": ("_roughness", ("map_Pr",)),
    "metallic": ("_metallic", ("map_Pm",)),
    "normal": ("_normal", ("norm", "map_Bump")),
}


def result_parts(result) -> tuple[object, dict | None]:
    """(texture or {page: texture}, {page: maps} or None) from what save_textured was given: a TextureResult (its
    pages and maps), or, as before maps existed, a texture array or a dict of pages."""
    if not (hasattr(result, "texture") and hasattr(result, "maps")):
        return result, None
    if result.textures:
        return result.textures, (dict(result.page_maps) if result.page_maps else None)
    return result.texture, ({"": result.maps} if result.maps else None)


def map_images(maps: Mapping[str, np.ndarray], what: str) -> dict[str, Image.Image]:
    """8-bit images of one page's maps: "roughness" and "metallic" grey, "normal" RGB, and "metallic_roughness"
    as glTF packs them (R 255, G roughness, B metallic)."""
    missing = [k for k in MAP_NAMES[1:] if k not in maps]
    if missing:
        raise InvalidParameterError(f"The maps of {what} lack {', '.join(missing)}; pass TextureResult.maps whole.")
    rough, metal = (_scalar(maps[k], f"{k} map of {what}") for k in ("roughness", "metallic"))
    normal = as_float_image(maps["normal"], 3, f"normal map of {what}")
    if not rough.shape == metal.shape == normal.shape[:2]:
        raise InvalidParameterError(
            f"The maps of {what} differ in size: roughness {rough.shape}, metallic {metal.shape}, "
            f"normal {normal.shape[:2]}."
        )
    mr = np.stack([np.ones_like(rough), rough, metal], axis=-1)
    return {
        "roughness": Image.fromarray(_bytes(rough), "L"),
        "metallic": Image.fromarray(_bytes(metal), "L"),
        "normal": Image.fromarray(_bytes(normal)),
        "metallic_roughness": Image.fromarray(_bytes(mr)),
    }


def _scalar(image, what: str) -> np.ndarray:
    a = as_float_image(image, 1, what)
    return a[..., 0]


def _bytes(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def tangent_parts(mesh: trimesh.Trimesh, faces: np.ndarray):
    """(vertices, faces, uv, normals, tangents (N, 4)) of the faces `faces` of `mesh`: one vertex per distinct
    (vertex, normal, tangent frame) among their corners, normals the smooth ones maps are baked with."""
    md = mesh_data(mesh)
    tangent, sign = md.corner_tangents
    corner_n = md.corner_normals[faces].reshape(-1, 3)
    corner_t = np.concatenate([tangent[faces], sign[faces][..., None]], axis=-1).reshape(-1, 4)
    vid = md.faces[faces].reshape(-1)
    key = np.concatenate([vid[:, None], np.round(corner_t * 1e5), np.round(corner_n * 1e5)], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    v = vid[first]
    return (
        md.vertices[v],
        inverse.reshape(-1, 3),
        md.uv[v],
        corner_n[first].astype(np.float32),
        corner_t[first].astype(np.float32),
    )


def add_tangents(glb: bytes, tangents: Mapping[str, np.ndarray]) -> bytes:
    """A GLB (as trimesh writes it) with a TANGENT accessor added to the primitives of each mesh named in
    `tangents` ({mesh name: (N, 4) float32, one row per vertex of that mesh's POSITION}; a file of one mesh takes
    the one entry whatever its name, as trimesh names a lone mesh itself)."""
    json_len = struct.unpack_from("<I", glb, 12)[0]
    gltf = json.loads(glb[20 : 20 + json_len])
    rest = glb[20 + json_len :]
    bin_len = struct.unpack_from("<I", rest, 0)[0] if rest else 0
    binary = bytearray(rest[8 : 8 + bin_len])
    views, accessors = gltf.setdefault("bufferViews", []), gltf.setdefault("accessors", [])
    meshes = gltf.get("meshes", [])
    lone = next(iter(tangents.values())) if len(meshes) == 1 and len(tangents) == 1 else None
    for mesh in meshes:
        t = tangents.get(mesh.get("name"), lone)
        if t is None:
            continue
        for primitive in mesh["primitives"]:
            count = accessors[primitive["attributes"]["POSITION"]]["count"]
            if count != len(t):
                raise ValueError(f"mesh {mesh.get('name')!r}: {count} vertices but {len(t)} tangents")
            binary += b"\0" * (-len(binary) % 4)
            data = np.ascontiguousarray(t, "<f4").tobytes()
            views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(data), "target": 34962})
            binary += data
            accessors.append({"bufferView": len(views) - 1, "componentType": 5126, "count": count, "type": "VEC4"})
            primitive["attributes"]["TANGENT"] = len(accessors) - 1
    binary += b"\0" * (-len(binary) % 4)
    gltf["buffers"][0]["byteLength"] = len(binary)
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(text), b"JSON"),
            text,
            struct.pack("<I4s", len(binary), b"BIN\0"),
            bytes(binary),
        ]
    )
