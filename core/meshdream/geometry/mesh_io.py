"""Loading meshes into MeshDream's normalized frame, and writing textured results back in the user's frame.

`load_mesh` returns a clean triangle mesh centred at the origin with its longest side 2 (so cameras, depth
ranges and tolerances mean the same on every mesh) and with usable UVs (its own, or a fresh xatlas unwrap).
The transform from the user's coordinates is kept in `mesh.metadata["meshdream"]["to_normalized"]`, and
`save_textured` applies its inverse, so exported files line up with the original.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ..errors import (
    InvalidMeshError,
    InvalidParameterError,
    MeshDreamWarning,
    MeshFileNotFoundError,
    OutputExistsError,
    UnsupportedFormatError,
)
from .texture import as_float_image
from .unwrap import fit_unit_square, unwrapped, uvs_usable

READ_FORMATS = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
WRITE_FORMATS = (".glb", ".obj")


def _gltf_uv_set(path: Path, uv_set: int):
    """Load a glTF / GLB file with its TEXCOORD_<uv_set> as the UVs: trimesh reads TEXCOORD_0 only, so every
    primitive's TEXCOORD_0 is pointed at the chosen accessor before trimesh parses the file."""
    data = path.read_bytes()
    glb = data[:4] == b"glTF"
    size = struct.unpack_from("<I", data, 12)[0] if glb else len(data)
    gltf = json.loads(data[20 : 20 + size] if glb else data)
    primitives = [p for m in gltf.get("meshes", []) for p in m.get("primitives", [])]
    name = f"TEXCOORD_{uv_set}"
    missing = sum(name not in p.get("attributes", {}) for p in primitives)
    if missing:
        found = sorted({a for p in primitives for a in p.get("attributes", {}) if a.startswith("TEXCOORD_")})
        raise InvalidParameterError(
            f"'{path.name}' has no UV set {uv_set} ({name}) on {missing} of {len(primitives)} primitives; "
            f"its UV sets: {', '.join(found) or 'none'}."
        )
    for p in primitives:
        p["attributes"]["TEXCOORD_0"] = p["attributes"][name]
    text = json.dumps(gltf).encode()
    if not glb:
        resolver = trimesh.resolvers.FilePathResolver(str(path))
        return trimesh.load(io.BytesIO(text), file_type="gltf", resolver=resolver, process=False)
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    rest = data[20 + size :]
    head = struct.pack("<4sII", b"glTF", 2, 20 + len(text) + len(rest)) + struct.pack("<I4s", len(text), b"JSON")
    return trimesh.load(io.BytesIO(head + text + rest), file_type="glb", process=False)


def _read(source, uv_set: int = 0) -> trimesh.Trimesh:
    if uv_set and not (isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in (".glb", ".gltf")):
        raise InvalidParameterError(
            f"uv_set={uv_set}: only glTF / GLB files hold several UV sets; other meshes have one (uv_set=0)."
        )
    if isinstance(source, trimesh.Trimesh):
        return source.copy()
    if isinstance(source, trimesh.Scene):
        return source.to_geometry() if len(source.geometry) else trimesh.Trimesh()
    path = Path(os.fspath(source)).expanduser()
    if not path.is_file():
        raise MeshFileNotFoundError(
            f"No mesh file at '{path}'; check the path (relative paths start at {os.getcwd()})."
        )
    if path.suffix.lower() not in READ_FORMATS:
        raise UnsupportedFormatError(
            f"'{path.name}' is not a format MeshDream reads; convert it to one of {', '.join(READ_FORMATS)}."
        )
    try:
        loaded = _gltf_uv_set(path, uv_set) if uv_set else trimesh.load(str(path), process=False)
    except InvalidParameterError:
        raise
    except Exception as exc:  # parsers raise anything from KeyError to struct.error on broken files
        raise InvalidMeshError(f"Could not read '{path.name}' ({exc}); the file may be damaged or not a mesh.") from exc
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)] if loaded.geometry else []
        if not meshes:
            raise InvalidMeshError(f"'{path.name}' holds no triangles (only points, lines or an empty scene).")
        loaded = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
    if not isinstance(loaded, trimesh.Trimesh):
        raise InvalidMeshError(
            f"'{path.name}' holds no triangles ({type(loaded).__name__}); for point clouds use points_to_mesh()."
        )
    return loaded


def _clean(mesh: trimesh.Trimesh, name: str) -> trimesh.Trimesh:
    """Reject what cannot be repaired, drop (with a warning) degenerate faces that can."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise InvalidMeshError(
            f"{name} has no faces; MeshDream needs a surface (for point clouds use points_to_mesh())."
        )
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices).all(axis=1)).sum())
        raise InvalidMeshError(f"{name} has {bad} vertices with NaN or infinite coordinates; fix or delete them first.")
    tri = vertices[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    extent = np.ptp(vertices[faces.ravel()], axis=0).max()
    good = area2 > (extent * 1e-7) ** 2
    if not good.any():
        raise InvalidMeshError(f"All {len(faces)} faces of {name} have zero area; the mesh has no surface to texture.")
    if not good.all():
        warnings.warn(
            f"Dropped {int((~good).sum())} zero-area faces of {name} (of {len(faces)}).", MeshDreamWarning, stacklevel=3
        )
    uv = getattr(mesh.visual, "uv", None)
    out = trimesh.Trimesh(vertices, faces[good], process=False)
    if uv is not None and len(uv) == len(vertices):
        out.visual = trimesh.visual.TextureVisuals(uv=np.asarray(uv, dtype=np.float64))
    out.merge_vertices()  # merges equal positions with equal UVs only
    out.remove_unreferenced_vertices()
    return out


def load_mesh(source, unwrap: str = "auto", normalize: bool = True, uv_set: int = 0) -> trimesh.Trimesh:
    """Load a mesh (OBJ, GLB/glTF, PLY, STL, OFF path, or a trimesh object, which is copied, not changed).

    unwrap: "auto" keeps usable UVs and unwraps otherwise (none, outside 0..1, overlapping); "always"; "never".
    normalize: centre the bounding box at the origin and scale the longest side to 2.
    uv_set: which UV set of a glTF / GLB file to texture (n for TEXCOORD_n, e.g. Blender's active UV map); other
        formats have one.
    """
    if unwrap not in ("auto", "always", "never"):
        raise InvalidMeshError(f"unwrap={unwrap!r} is unknown; use 'auto', 'always' or 'never'.")
    if int(uv_set) != uv_set or uv_set < 0:
        raise InvalidParameterError(f"uv_set={uv_set!r} must be a UV set index: 0 (the first), 1, ...")
    name = f"'{Path(os.fspath(source)).name}'" if isinstance(source, (str, os.PathLike)) else "The mesh"
    mesh = _clean(_read(source, int(uv_set)), name)
    to_norm = np.eye(4)
    if normalize:
        lo, hi = mesh.bounds
        scale = 2.0 / max(float((hi - lo).max()), 1e-12)
        to_norm[:3, :3] *= scale
        to_norm[:3, 3] = -scale * 0.5 * (lo + hi)
        mesh.apply_transform(to_norm)
    uv = fit_unit_square(getattr(mesh.visual, "uv", None))
    did_unwrap = unwrap == "always" or (unwrap == "auto" and not uvs_usable(uv, mesh.faces))
    if did_unwrap:
        mesh = unwrapped(mesh)
    elif uv is not None:
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    mesh.metadata["meshdream"] = {
        "to_normalized": to_norm.tolist(),
        "unwrapped": bool(did_unwrap),
        "uv_set": int(uv_set),
    }
    return mesh


def to_user_frame(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of a mesh from `load_mesh` moved back to the coordinates of the file it came from."""
    out = mesh.copy()
    to_norm = np.asarray(mesh.metadata.get("meshdream", {}).get("to_normalized", np.eye(4)))
    out.apply_transform(np.linalg.inv(to_norm))
    return out


def save_textured(mesh: trimesh.Trimesh, texture, path, overwrite: bool = False) -> Path:
    """Write the mesh with `texture` ((S, S, 3) float in [0, 1] or uint8, OBJ convention) as its base colour.

    .glb: one self-contained file (PBR material, baseColorTexture). .obj: OBJ + MTL + PNG side by side.
    Existing files are kept unless overwrite=True.
    """
    path = Path(os.fspath(path)).expanduser()
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise UnsupportedFormatError(f"Cannot write '{path.name}'; use a {' or '.join(WRITE_FORMATS)} file name.")
    written = [path] if suffix == ".glb" else [path, path.with_suffix(".mtl"), path.with_suffix(".png")]
    existing = [p for p in written if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"'{existing[0]}' already exists; choose another name or pass overwrite=True (--overwrite) to replace it."
        )
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise InvalidMeshError("The mesh has no UV coordinates to map the texture with; load it with load_mesh().")
    rgb = as_float_image(texture, 3, "texture")
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    out = to_user_frame(mesh)
    if suffix == ".glb":
        material = trimesh.visual.material.PBRMaterial(
            name=path.stem, baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0
        )
    else:
        material = trimesh.visual.material.SimpleMaterial(name=path.stem, image=image)
    out.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".glb":
        out.export(str(path))
    else:
        # The material is named after the file, so trimesh writes <stem>.mtl and <stem>.png beside it.
        text, files = trimesh.exchange.obj.export_obj(out, return_texture=True, mtl_name=path.with_suffix(".mtl").name)
        for fname, data in files.items():
            (path.parent / fname).write_bytes(data)
        path.write_text(text)
    return path
