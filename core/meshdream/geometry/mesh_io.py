"""Loading meshes into MeshDream's normalized frame, and writing textured results back in the user's frame.

`load_mesh` returns a clean triangle mesh centred at the origin with its longest side 2 (so cameras, depth
ranges and tolerances mean the same on every mesh) and with usable UVs (its own, or a fresh xatlas unwrap).
The transform from the user's coordinates is kept in the mesh's MeshInfo (`mesh_info(mesh).to_normalized`),
and `save_textured` applies its inverse, so exported files line up with the original.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import time
import warnings
from pathlib import Path
from typing import Mapping, Optional

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
from ..files import writing
from ..progress import CancelToken, ProgressCallback
from .material_files import MAP_FILES, add_tangents, map_images, result_parts, tangent_parts
from .meshdata import MeshInfo, has_mesh_info, mesh_data, mesh_info
from .pages import MATERIAL, Pages, atlas_mesh, face_materials, layout_pages
from .texture import as_float_image
from .unwrap import fit_unit_square, udim_tiles, unwrapped, uvs_usable

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


def _material_key(part: trimesh.Trimesh):
    """What tells a part's material apart: its name, else the material object; None without a material."""
    material = getattr(part.visual, "material", None)
    return None if material is None else (getattr(material, "name", None) or id(material))


def _merged(parts: list[trimesh.Trimesh]) -> tuple[trimesh.Trimesh, list[str]]:
    """One mesh from scene parts (OBJ `usemtl` groups, glTF primitives), each face's material kept in the MATERIAL
    face attribute; returns it and the material names ([] when no part has a material).

    trimesh's own concatenation packs the parts' materials into one atlas, rewriting their UVs; here UVs stay as
    they are (materials may overlap in UV space: each has a texture of its own).
    """
    keys = [_material_key(p) for p in parts]
    order = list(dict.fromkeys(keys))
    names = [] if order == [None] else [k if isinstance(k, str) else f"material_{i}" for i, k in enumerate(order)]
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    uvs = [getattr(p.visual, "uv", None) for p in parts]
    out = trimesh.Trimesh(
        np.concatenate([np.asarray(p.vertices, np.float64) for p in parts]),
        np.concatenate([np.asarray(p.faces, np.int64).reshape(-1, 3) + o for p, o in zip(parts, offsets)]),
        process=False,
    )
    if all(uv is not None and len(uv) == len(p.vertices) for uv, p in zip(uvs, parts)):
        out.visual = trimesh.visual.TextureVisuals(uv=np.concatenate(uvs).astype(np.float64))
    index = np.repeat([order.index(k) for k in keys], [len(p.faces) for p in parts])
    out.face_attributes[MATERIAL] = index.astype(np.int64)
    return out, names


def _read(source, uv_set: int = 0) -> tuple[trimesh.Trimesh, list[str]]:
    if uv_set and not (isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in (".glb", ".gltf")):
        raise InvalidParameterError(
            f"uv_set={uv_set}: only glTF / GLB files hold several UV sets; other meshes have one (uv_set=0)."
        )
    if isinstance(source, trimesh.Trimesh):
        names, index = face_materials(source) if has_mesh_info(source) else ([], None)
        if names:  # a mesh from load_mesh: keep its materials
            out = source.copy()
            out.face_attributes[MATERIAL] = index
            return out, names
        return _merged([source.copy()])
    if isinstance(source, trimesh.Scene):
        parts = [g for g in source.dump() if isinstance(g, trimesh.Trimesh)] if source.geometry else []
        return _merged(parts) if parts else (trimesh.Trimesh(), [])
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
        return _merged(meshes)
    if not isinstance(loaded, trimesh.Trimesh):
        raise InvalidMeshError(
            f"'{path.name}' holds no triangles ({type(loaded).__name__}); for point clouds use points_to_mesh()."
        )
    return _merged([loaded])


def _clean(mesh: trimesh.Trimesh, materials: list[str], name: str) -> tuple[trimesh.Trimesh, list[str]]:
    """Reject what cannot be repaired, drop (with a warning) degenerate faces that can; materials left without
    faces are dropped too."""
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
    used, index = np.unique(np.asarray(mesh.face_attributes[MATERIAL])[good], return_inverse=True)
    out.face_attributes[MATERIAL] = index.astype(np.int64)
    out.merge_vertices()  # merges equal positions with equal UVs only; faces keep their order
    out.remove_unreferenced_vertices()
    return out, [materials[k] for k in used] if materials else []


def _uvs_usable(uv: np.ndarray | None, faces: np.ndarray, materials: list[str], index: np.ndarray) -> bool:
    """Whether a layout can be textured as it is: per UDIM tile, or per material (materials may overlap each
    other in UV space: in the file each has a texture of its own)."""
    if uv is None:
        return False
    pages = layout_pages(uv, faces, materials, index, per_material=True)
    if pages is None:
        return uvs_usable(uv, faces)
    corner = pages.to_atlas(uv[faces], pages.face_page[:, None])
    return uvs_usable(corner.reshape(-1, 2), np.arange(corner.size // 2).reshape(-1, 3))


def load_mesh(
    source,
    unwrap: str = "auto",
    normalize: bool = True,
    uv_set: int = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> trimesh.Trimesh:
    """Load a mesh (OBJ, GLB/glTF, PLY, STL, OFF path, or a trimesh object, which is copied, not changed).

    unwrap: "auto" keeps usable UVs and unwraps otherwise (none, outside 0..1, overlapping); "always"; "never".
        UDIM layouts (tiles 1001+) and materials overlapping each other in UV space are usable: they are kept.
    normalize: centre the bounding box at the origin and scale the longest side to 2.
    uv_set: which UV set of a glTF / GLB file to texture (n for TEXCOORD_n, e.g. Blender's active UV map); other
        formats have one.
    progress, cancel: an unwrap of a large mesh (seconds) reports stage "unwrap" and stops on cancel.

    `mesh_info(mesh)` (a MeshInfo) says what was found and done: the transform from the file's coordinates, whether
    it was unwrapped, the UV set, the materials (each face's index into them is the face attribute "material"), the
    UDIM tiles and how long unwrapping took.
    """
    if unwrap not in ("auto", "always", "never"):
        raise InvalidMeshError(f"unwrap={unwrap!r} is unknown; use 'auto', 'always' or 'never'.")
    if int(uv_set) != uv_set or uv_set < 0:
        raise InvalidParameterError(f"uv_set={uv_set!r} must be a UV set index: 0 (the first), 1, ...")
    name = f"'{Path(os.fspath(source)).name}'" if isinstance(source, (str, os.PathLike)) else "The mesh"
    mesh, materials = _clean(*_read(source, int(uv_set)), name)
    to_norm = np.eye(4)
    if normalize:
        lo, hi = mesh.bounds
        scale = 2.0 / max(float((hi - lo).max()), 1e-12)
        to_norm[:3, :3] *= scale
        to_norm[:3, 3] = -scale * 0.5 * (lo + hi)
        mesh.apply_transform(to_norm)
    faces = np.asarray(mesh.faces, np.int64)
    uv = getattr(mesh.visual, "uv", None)
    if udim_tiles(uv, faces) is None:
        uv = fit_unit_square(uv)
    index = mesh.face_attributes[MATERIAL]
    did_unwrap = unwrap == "always" or (unwrap == "auto" and not _uvs_usable(uv, faces, materials, index))
    unwrap_s, t = 0.0, time.perf_counter()
    if did_unwrap:
        mesh = unwrapped(mesh, progress=progress, cancel=cancel)
        unwrap_s = time.perf_counter() - t
    elif uv is not None:
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    tiles = udim_tiles(getattr(mesh.visual, "uv", None), np.asarray(mesh.faces, np.int64))
    MeshInfo(
        to_normalized=to_norm,
        unwrapped=bool(did_unwrap),
        uv_set=int(uv_set),
        materials=materials,
        udim_tiles=() if tiles is None else np.unique(tiles),
        unwrap_seconds=round(unwrap_s, 4),
    ).attach(mesh)
    return mesh


def to_user_frame(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy of a mesh from `load_mesh` moved back to the coordinates of the file it came from."""
    out = mesh.copy()
    out.apply_transform(np.linalg.inv(mesh_info(mesh).to_normalized))
    return out


def _to_image(texture, what: str) -> Image.Image:
    rgb = as_float_image(texture, 3, what)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))


def _output_pages(mesh: trimesh.Trimesh, texture) -> tuple[Pages | None, dict]:
    """(pages or None, {page name: image}) of what save_textured writes; one image is keyed ""."""
    uv, faces = mesh.visual.uv, np.asarray(mesh.faces, np.int64)
    names, index = face_materials(mesh)
    tiles = layout_pages(uv, faces, names, index, per_material=False)
    if isinstance(texture, Mapping):
        pages = tiles or layout_pages(uv, faces, names, index, per_material=True)
        if pages is None and len(texture) == 1:
            return None, {"": _to_image(next(iter(texture.values())), "texture")}
        if pages is None:
            raise InvalidParameterError(
                f"Got {len(texture)} texture pages but the mesh has one texture space; pass one (S, S, 3) image."
            )
        pages.check_names(texture)
        return pages, {k: _to_image(texture[k], f"texture of page {k}") for k in pages.names}
    if tiles is not None:
        raise InvalidParameterError(
            f"The mesh's UVs span UDIM tiles {list(tiles.names)}; pass one image per tile, {{'1001': image, ...}} "
            "(TextureResult.textures)."
        )
    if len(names) > 1 and not uvs_usable(uv, faces):
        raise InvalidParameterError(
            f"The UVs of materials {names} overlap each other, so one texture cannot serve them; pass one image per "
            "material, {name: image} (TextureResult.textures)."
        )
    return None, {"": _to_image(texture, "texture")}


def _file_names(stem: str, pages: Pages | None, suffix: str = "") -> dict[str, str]:
    """Image file of each page: <stem>.png, <stem>.<tile>.png, or <stem>_<material>.png (made file-safe); a map's
    images put its `suffix` after the stem or material: <stem>_roughness.png, <stem>_roughness.<tile>.png."""
    if pages is None:
        return {"": f"{stem}{suffix}.png"}
    if pages.udim:
        return {k: f"{stem}{suffix}.{k}.png" for k in pages.names}
    out: dict[str, str] = {}
    for k in pages.names:
        safe = re.sub(r"[^\w.-]", "_", k)
        while f"{stem}_{safe}{suffix}.png" in out.values():
            safe += "_"
        out[k] = f"{stem}_{safe}{suffix}.png"
    return out


def _page_map_images(pages: Pages | None, page_maps: dict) -> dict[str, dict]:
    """{page key as _output_pages keys it: map_images of its maps}."""
    if pages is None:
        if len(page_maps) != 1:
            raise InvalidParameterError(f"Got maps for pages {sorted(page_maps)} but the mesh has one texture space.")
        return {"": map_images(next(iter(page_maps.values())), "the texture")}
    pages.check_names(page_maps, "maps")
    return {k: map_images(page_maps[k], f"page {k}") for k in pages.names}


def save_textured(mesh: trimesh.Trimesh, result, path, overwrite: bool = False) -> Path:
    """Write the mesh with its material: `result` is a TextureResult (its texture, pages and PBR maps), or a base
    colour alone: one (S, S, 3) image (float in [0, 1] or uint8, OBJ convention) that all its materials share, or,
    for a mesh whose texture has pages, one image per page keyed by its name (material names or UDIM tiles "1001",
    ...: TextureResult.textures).

    Every material of the mesh is written (a mesh with one material gets it named after the file).
    .glb: one self-contained file, a PBR material per material; UDIM tiles are packed into one atlas with
    remapped UVs (glTF has no UDIM). With maps: metallicRoughnessTexture (G roughness, B metallic), normalTexture,
    and NORMAL and TANGENT (MikkTSpace) per vertex, the frame the normal map was baked in.
    .obj: OBJ + MTL + PNGs side by side: <stem>.png, <stem>_<material>.png, or <stem>.<tile>.png per UDIM tile
    (map_Kd <stem>.<UDIM>.png) with the UVs as they are. With maps also vertex normals, and map_Pr, map_Pm, norm
    and map_Bump (which Blender's importer reads as the normal map) naming <stem>_roughness.png,
    <stem>_metallic.png and <stem>_normal.png (per page named as the base colour is).
    Existing files are kept unless overwrite=True. Each file is written whole or not at all (files.writing):
    a failure (e.g. a full disk: OutputWriteError) leaves no broken or partial output.
    """
    path = Path(os.fspath(path)).expanduser()
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        raise UnsupportedFormatError(f"Cannot write '{path.name}'; use a {' or '.join(WRITE_FORMATS)} file name.")
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise InvalidMeshError("The mesh has no UV coordinates to map the texture with; load it with load_mesh().")
    texture, page_maps = result_parts(result)
    pages, images = _output_pages(mesh, texture)
    extra = None if page_maps is None else _page_map_images(pages, page_maps)
    files = _file_names(path.stem, pages)
    map_files = {m: _file_names(path.stem, pages, tail) for m, (tail, _) in MAP_FILES.items()} if extra else {}
    written = [path]
    if suffix == ".obj":
        written += [path.with_suffix(".mtl"), *(path.parent / f for f in files.values())]
        written += [path.parent / f for names in map_files.values() for f in names.values()]
    existing = [p for p in written if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"'{existing[0]}' already exists; choose another name or pass overwrite=True (--overwrite) to replace it."
        )
    names, index = face_materials(mesh)
    if len(names) < 2:
        names, index = [path.stem], np.zeros(len(mesh.faces), np.int64)
    out = to_user_frame(mesh)
    if suffix == ".glb":
        if pages is not None and pages.udim:
            atlas = _to_image(pages.pack({k: np.asarray(v) for k, v in images.items()}), "texture atlas")
            if extra:
                atlas_maps = {m: pages.pack({k: page_maps[k][m] for k in pages.names}, f"{m} map") for m in MAP_FILES}
                extra = {k: map_images(atlas_maps, "the atlas") for k in names}
            out, images = atlas_mesh(out, pages), {k: atlas for k in names}
        else:
            if pages is None:
                images = {k: images[""] for k in names}
                extra = None if extra is None else {k: extra[""] for k in names}
        with writing(path) as (temp,):
            scene, tangents = _glb_scene(out, index, names, [images[k] for k in names], extra)
            data = scene.export(file_type="glb", **({"include_normals": True} if extra else {}))
            temp.write_bytes(add_tangents(data, tangents) if tangents else data)
        return path
    if pages is not None and pages.udim:
        maps = [f"{path.stem}.<UDIM>.png"] * len(names)
        lines = {m: [f"{path.stem}{t}.<UDIM>.png"] * len(names) for m, (t, _) in MAP_FILES.items()} if extra else {}
    else:
        maps = [files[k if pages is not None else ""] for k in names]
        lines = {m: [map_files[m][k if pages is not None else ""] for k in names] for m in map_files}
    obj, mtl = _obj_texts(out, index, names, maps, path.with_suffix(".mtl").name, lines)
    # The images, then the MTL that names them, then the OBJ that names the MTL: each file refers only to files
    # already in place, and a failure leaves none of them half-written.
    pngs = [(image, path.parent / files[k]) for k, image in images.items()]
    for m in map_files:
        pngs += [(extra[k][m], path.parent / map_files[m][k]) for k in extra]
    with writing(*(p for _, p in pngs), path.with_suffix(".mtl"), path) as temps:
        for (image, _), temp in zip(pngs, temps):
            image.save(temp, format="PNG")
        temps[-2].write_text(mtl)
        temps[-1].write_text(obj)
    return path


def _glb_scene(mesh: trimesh.Trimesh, index: np.ndarray, names: list[str], images: list, extra=None):
    """One glTF mesh primitive (trimesh geometry) per material, each with its own PBR material; with map images
    (`extra`: {material: map_images}) the normal and metallic-roughness maps too, and per-vertex normals and
    tangents. Returns (scene or mesh, {mesh name: (N, 4) tangents} for add_tangents)."""
    scene = trimesh.Scene()
    uv = np.asarray(mesh.visual.uv)
    tangents = {}
    for k, (name, image) in enumerate(zip(names, images)):
        faces = np.flatnonzero(index == k)
        if extra is None:
            used, inverse = np.unique(np.asarray(mesh.faces)[faces], return_inverse=True)
            vertices, tris, part_uv, normals = mesh.vertices[used], inverse.reshape(-1, 3), uv[used], None
            material = trimesh.visual.material.PBRMaterial(
                name=name, baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0
            )
        else:
            vertices, tris, part_uv, normals, tangents[name] = tangent_parts(mesh, faces)
            material = trimesh.visual.material.PBRMaterial(
                name=name,
                baseColorTexture=image,
                metallicRoughnessTexture=extra[name]["metallic_roughness"],
                normalTexture=extra[name]["normal"],
                metallicFactor=1.0,
                roughnessFactor=1.0,
            )
        part = trimesh.Trimesh(
            vertices, tris, visual=trimesh.visual.TextureVisuals(uv=part_uv, material=material), process=False
        )
        if normals is not None:
            part.vertex_normals = normals
        scene.add_geometry(part, geom_name=name)
    return (next(iter(scene.geometry.values())) if len(names) == 1 else scene), tangents  # one mesh: no node


def _obj_texts(
    mesh: trimesh.Trimesh, index: np.ndarray, names: list[str], maps: list[str], mtl_name: str, lines: dict
) -> tuple[str, str]:
    """(OBJ, MTL) text: one `usemtl` group per material, and materials that show their map_Kd image unlit by
    Kd (1, 1, 1): viewers multiply the two. With PBR map files (`lines`: {map: file per material}) the OBJ carries
    the smooth normals the normal map was baked against (vn), and the MTL names the maps."""
    obj_names = [re.sub(r"\s", "_", n) for n in names]  # OBJ / MTL names end at whitespace
    buf = io.StringIO()
    buf.write(f"# MeshDream\nmtllib {mtl_name}\n")
    np.savetxt(buf, mesh.vertices, fmt="v %.8f %.8f %.8f")
    np.savetxt(buf, mesh.visual.uv, fmt="vt %.8f %.8f")
    if lines:
        np.savetxt(buf, mesh_data(mesh).vertex_normals, fmt="vn %.6f %.6f %.6f")
    per = 3 if lines else 2
    faces = np.repeat(np.asarray(mesh.faces) + 1, per, axis=1)  # v/vt(/vn) share indices
    face_fmt = " ".join(["/".join(["%d"] * per)] * 3)
    for k, name in enumerate(obj_names):
        buf.write(f"usemtl {name}\n")
        np.savetxt(buf, faces[index == k], fmt=f"f {face_fmt}")
    pbr = [
        "".join(f"{key} {files[k]}\n" for m, files in lines.items() for key in MAP_FILES[m][1])
        for k in range(len(names))
    ]
    mtl = "".join(
        f"newmtl {name}\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nNs 1\nillum 1\nmap_Kd {image}\n{pbr[k] if lines else ''}\n"
        for k, (name, image) in enumerate(zip(obj_names, maps))
    )
    return buf.getvalue(), mtl
