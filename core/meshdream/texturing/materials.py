"""PBR maps for a finished base colour: roughness, metallic and a tangent-space normal map (issue 27).

Every view renders the *finished* texture, so all views see one base colour and cannot disagree about it. A
material model estimates per-view roughness, metallic, surface-detail normals (and, intrinsics models, a de-lit
albedo); the estimates are baked with the same cameras and view weights as the base colour, so every map aligns
texel for texel with it. Detail normals are rotated onto each pixel's rendered geometric normal, baked in object
space (where the two sides of a UV seam are the same vector), renormalized, and only then turned into tangent
space with MikkTSpace frames, the frame Blender and glTF viewers decode with.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Mapping, Optional, Sequence

import numpy as np
import trimesh

from ..errors import InvalidParameterError, MeshDreamWarning
from ..generators.material_models import MAP_NAMES, MaterialModel, check_material_views, load_material_model
from ..geometry import BakeOperator, Camera, ViewMaps, bake_operator, orbit_cameras, render_texture, render_views
from ..geometry.meshdata import interpolate, mesh_data
from ..geometry.pages import Pages, atlas_mesh, face_materials, layout_pages
from ..geometry.texture import as_float_image, check_texture_size
from ..geometry.uvmaps import require_uvs, uv_maps
from ..progress import CancelToken, ProgressCallback, Reporter
from .inpaint import inpaint_uv

FLAT = np.array([0.5, 0.5, 1.0], np.float32)  # the encoded tangent-space normal (0, 0, 1): no detail


def resolve_material_model(material_model=None, generator=None) -> MaterialModel:
    """A loaded model as it is; a spec loaded (load_material_model); None: the generator family's own, else the
    built-in one with one MeshDreamWarning that says so."""
    if isinstance(material_model, MaterialModel):
        return material_model
    if material_model is not None:
        return load_material_model(material_model)
    own = getattr(generator, "material_model", None) if generator is not None else "builtin"
    if own is None:
        warnings.warn(
            f"{getattr(generator, 'name', 'This generator')} has no material model of its own; the PBR maps come from "
            "the built-in material model. Pass material_model='prs-eth/marigold-iid-appearance-v1-1' (a cached "
            "Marigold intrinsics model) for one made for photographic textures.",
            MeshDreamWarning,
            stacklevel=3,
        )
    return load_material_model(own or "builtin")


def bake_materials(
    mesh: trimesh.Trimesh,
    texture,
    prompt: str = "",
    material_model=None,
    cameras: Optional[Sequence[Camera]] = None,
    n_views: int = 8,
    view_resolution: Optional[int] = None,
    delight: Optional[bool] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> dict:
    """The PBR maps of a finished base colour on `mesh` (from load_mesh, with the UVs the texture was painted on).

    texture: (S, S, 3) image, or for a mesh whose texture has pages one image per page keyed by name
        (TextureResult.textures). material_model: a MaterialModel, a load_material_model spec, or None (the
        built-in one). cameras: the views to estimate from (default orbit_cameras(n_views) at view_resolution,
        512 px unless given); texture_mesh passes the cameras the texture was made with.
    delight: bake the model's albedo as the base colour (None: when the model makes one), so shading the views
        carried is not painted into the material.
    Returns {"base_color", "roughness", "metallic", "normal"} as TextureResult.maps describes; for pages,
    {page name: maps}.
    """
    require_uvs(mesh)
    model = resolve_material_model(material_model)
    if isinstance(texture, Mapping):
        pages = _input_pages(mesh, texture)
        atlas = pages.pack(texture)
        mesh = atlas_mesh(mesh, pages)
        return split_maps(
            pages,
            bake_materials(mesh, atlas, prompt, model, cameras, n_views, view_resolution, delight, progress, cancel),
            uv_maps(mesh, atlas.shape[0]).coverage,
        )
    texture = as_float_image(texture, 3, "texture")
    if texture.shape[0] != texture.shape[1]:
        raise InvalidParameterError(f"The texture must be square, got {texture.shape[1]} x {texture.shape[0]}.")
    size = check_texture_size(texture.shape[0])
    if cameras is None:
        cameras = orbit_cameras(n_views, resolution=view_resolution or 512, mesh=mesh)
    cameras = list(cameras)
    view_maps = render_views(mesh, cameras, require_visible=False)
    op = bake_operator(mesh, cameras, size, maps=view_maps)
    return material_maps(mesh, texture, model, cameras, view_maps, op, prompt, delight, progress, cancel)


def material_maps(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    model: MaterialModel,
    cameras: Sequence[Camera],
    view_maps: Sequence[ViewMaps],
    op: BakeOperator,
    prompt: str = "",
    delight: Optional[bool] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> dict:
    """bake_materials' work for given views and the base colour's own bake operator (same cameras, same weights)."""
    report = Reporter(progress, cancel)
    size = texture.shape[0]
    if op.size != size:
        raise InvalidParameterError(f"The bake operator is for {op.size}² texels, the texture is {size}².")
    delight = model.makes_albedo if delight is None else bool(delight)
    report("materials", 0, 3, "rendering the base colour")
    images = np.stack([render_texture(mesh, texture, c, 0.0, m) for c, m in zip(cameras, view_maps)])
    masks = np.stack([m.mask for m in view_maps])
    rotations = np.stack([c.rotation for c in cameras]).astype(np.float32)  # (V, 3, 3) world -> camera
    normals = np.einsum("vhwc,vdc->vhwd", np.stack([m.normal for m in view_maps]), rotations)
    report("materials", 1, 3, f"estimating materials ({model.name})")
    views = check_material_views(model.estimate(images, masks, normals, prompt, progress, cancel), masks.shape)
    if delight and views.albedo is None:
        raise InvalidParameterError(f"delight=True needs a material model that makes albedo; {model.name} does not.")
    report("materials", 2, 3, "baking the maps")
    world = np.einsum("vhwc,vcd->vhwd", on_geometry(views.normal, normals), rotations)  # camera -> world
    channels = [views.roughness[..., None], views.metallic[..., None], world]
    if delight:
        channels.append(views.albedo)
    stacked = np.concatenate(channels, axis=-1)
    baked = op.apply(list(stacked), padding=0)
    unseen = ~baked.seen
    scalars = np.concatenate([baked.texture[..., :2], np.zeros((size, size, 1), np.float32)], axis=-1)
    scalars = inpaint_uv(mesh, np.clip(scalars, 0.0, 1.0), unseen)
    base = inpaint_uv(mesh, np.clip(baked.texture[..., 5:8], 0.0, 1.0), unseen) if delight else texture
    normal = tangent_normal_map(mesh, baked.texture[..., 2:5], baked.seen)
    report("materials", 3, 3)
    return {
        "base_color": base,
        "roughness": scalars[..., 0].copy(),
        "metallic": scalars[..., 1].copy(),
        "normal": normal,
    }


def on_geometry(detail: Optional[np.ndarray], geometric: np.ndarray) -> np.ndarray:
    """(..., 3) detail normals given for a surface facing the camera ((0, 0, 1): none), each turned by the smallest
    rotation that takes (0, 0, 1) onto its pixel's geometric normal (unit, same frame); None: the geometric normals."""
    if detail is None:
        return geometric.astype(np.float32)
    d = detail / np.maximum(np.linalg.norm(detail, axis=-1, keepdims=True), 1e-12)
    g = geometric
    c = g[..., 2:3]
    k = np.stack([-g[..., 1], g[..., 0], np.zeros_like(g[..., 0])], axis=-1)  # (0, 0, 1) x g, length sin(angle)
    # Rodrigues: R d = d cos + k x d + k (k . d) / (1 + cos); a normal facing away (cos -1) has no defined turn.
    out = d * c + np.cross(k, d) + k * (np.einsum("...c,...c->...", k, d)[..., None] / np.maximum(1.0 + c, 1e-6))
    return np.where(np.linalg.norm(g, axis=-1, keepdims=True) > 0.5, out, 0.0).astype(np.float32)


def tangent_normal_map(mesh: trimesh.Trimesh, world: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(S, S, 3) encoded tangent-space normal map from (S, S, 3) baked object-space normals (`seen` texels; the rest
    take the surface's own normal, i.e. flat). Each texel is expressed in the MikkTSpace frame interpolated at it, as
    a viewer's shader does (T, B = sign * N x T, N), and the gutter is padded. Seams are not matched as colours are:
    both sides were baked from the same views at their own surface points, while seam texel pairs lie up to a
    texel apart, where a curved surface's normal turns (tens of degrees on small charts)."""
    size = world.shape[0]
    maps = uv_maps(mesh, size)
    idx = np.flatnonzero(maps.coverage)
    face, bary = maps.face.ravel()[idx], maps.bary.reshape(-1, 3)[idx]
    tangents, signs = mesh_data(mesh).corner_tangents
    frame_n = maps.normal.reshape(-1, 3)[idx]
    t = interpolate(tangents, face, bary)
    t -= frame_n * np.einsum("nc,nc->n", t, frame_n)[:, None]
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    b = signs[face, :1] * np.cross(frame_n, t)
    v = np.where(seen.ravel()[idx, None], world.reshape(-1, 3)[idx], frame_n)
    local = np.stack([np.einsum("nc,nc->n", v, t), np.einsum("nc,nc->n", v, b), np.einsum("nc,nc->n", v, frame_n)], 1)
    local[:, 2] = np.maximum(local[:, 2], 0.05)  # a detail normal never faces into the surface
    local /= np.linalg.norm(local, axis=1, keepdims=True)
    out = np.tile(FLAT, (size * size, 1))
    out[idx] = local * 0.5 + 0.5
    return padded(mesh, out.reshape(size, size, 3))


def padded(mesh: trimesh.Trimesh, image: np.ndarray) -> np.ndarray:
    """The image with every gutter texel copying its nearest covered texel (as inpaint_uv pads)."""
    out = image.copy()
    flat = out.reshape(-1, out.shape[-1])
    texels, source, _ = uv_maps(mesh, image.shape[0]).gutter
    flat[texels] = flat[source]
    return out


def inpaint_maps(mesh: trimesh.Trimesh, maps: Mapping[str, np.ndarray], mask: np.ndarray, **inpaint) -> dict:
    """inpaint_uv for every map: the base colour as inpaint_uv fills it (`inpaint` passed on), roughness and
    metallic harmonically with seams matched, masked normals flat; every gutter padded."""
    check_maps(maps)
    out = {"base_color": inpaint_uv(mesh, maps["base_color"], mask, **inpaint)}
    size = out["base_color"].shape[0]
    scalars = np.stack([maps["roughness"], maps["metallic"], np.zeros((size, size), np.float32)], axis=-1)
    keep = {k: inpaint[k] for k in ("seam_width", "padding") if k in inpaint}
    scalars = inpaint_uv(mesh, scalars, mask, **keep)
    out["roughness"], out["metallic"] = scalars[..., 0].copy(), scalars[..., 1].copy()
    normal = np.where(np.asarray(mask, bool)[..., None], FLAT, as_float_image(maps["normal"], 3, "normal map"))
    out["normal"] = padded(mesh, renormalized(normal))
    return out


def for_maps(value, work, whole: bool = False):
    """Apply an image operation to PBR maps, returning the kind given: `value` a maps dict or a TextureResult with
    maps (its weight scaled along when the size changes). whole: `work` takes and returns the maps dict; else it
    takes one (S, S, 3) image (roughness and metallic go as two channels of one, normals are renormalized after)."""
    result = value if hasattr(value, "maps") else None
    if result is not None and result.textures:
        raise InvalidParameterError(
            "This result has texture pages; pass each page's maps (TextureResult.page_maps[name]) with its mesh."
        )
    if result is not None and not result.maps:
        raise InvalidParameterError("This result has no PBR maps; pass its texture (result.texture) instead.")
    maps = result.maps if result is not None else value
    check_maps(maps)
    out = work(maps) if whole else _each_map(maps, work)
    if result is None:
        return out
    k = out["base_color"].shape[0] // result.texture.shape[0]
    weight = result.weight if k == 1 else np.repeat(np.repeat(result.weight, k, 0), k, 1)
    return dataclasses.replace(result, texture=out["base_color"], weight=weight, maps=out)


def _each_map(maps: Mapping[str, np.ndarray], work) -> dict:
    base = work(maps["base_color"])
    size = np.shape(maps["roughness"])[0]
    scalars = work(np.stack([maps["roughness"], maps["metallic"], np.zeros((size, size), np.float32)], axis=-1))
    normal = renormalized(np.clip(work(as_float_image(maps["normal"], 3, "normal map")), 0.0, 1.0))
    return {
        "base_color": base,
        "roughness": scalars[..., 0].copy(),
        "metallic": scalars[..., 1].copy(),
        "normal": normal,
    }


def renormalized(encoded: np.ndarray) -> np.ndarray:
    """An encoded normal map with every texel a unit vector again (filtering and resizing shorten them)."""
    n = encoded * 2.0 - 1.0
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    return (n * 0.5 + 0.5).astype(np.float32)


def check_maps(maps: Mapping[str, np.ndarray]) -> None:
    """A maps dict has the four maps, one square size, the channels TextureResult.maps describes."""
    if set(maps) != set(MAP_NAMES):
        raise InvalidParameterError(f"Got maps {sorted(maps)}; a material has {', '.join(MAP_NAMES)}.")
    want = {"base_color": 3, "roughness": None, "metallic": None, "normal": 3}
    size = np.shape(maps["base_color"])[0]
    for name, channels in want.items():
        shape = np.shape(maps[name])
        expected = (size, size) if channels is None else (size, size, channels)
        if shape != expected:
            raise InvalidParameterError(f"The {name} map has shape {shape}; expected {expected} like the base colour.")


def split_maps(pages: Pages, maps: Mapping[str, np.ndarray], coverage: np.ndarray) -> dict:
    """{page: {map: array}} from atlas maps, each page's gutter padded from its own texels (Pages.split)."""
    split = {
        name: pages.split(np.asarray(m)[..., None] if np.ndim(m) == 2 else m, coverage) for name, m in maps.items()
    }
    return {page: {name: _squeezed(name, split[name][page]) for name in maps} for page in pages.names}


def pack_maps(pages: Pages, page_maps: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """{map: atlas} from {page: {map: array}}."""
    names = next(iter(page_maps.values())).keys()
    return {n: _squeezed(n, pages.pack({p: m[n] for p, m in page_maps.items()}, f"{n} map")) for n in names}


def _squeezed(name: str, image: np.ndarray) -> np.ndarray:
    return image[..., 0] if name in ("roughness", "metallic") and image.ndim == 3 else image


def _input_pages(mesh: trimesh.Trimesh, pages: Mapping) -> Pages:
    """The pages a dict of page images stands for: the mesh's UDIM tiles, else its materials."""
    uv, faces = np.asarray(mesh.visual.uv), np.asarray(mesh.faces, np.int64)
    names, index = face_materials(mesh)
    out = layout_pages(uv, faces, names, index, per_material=False) or layout_pages(
        uv, faces, names, index, per_material=True
    )
    if out is None:
        raise InvalidParameterError("The mesh has one texture space; pass one (S, S, 3) texture, not a dict of pages.")
    out.check_names(pages)
    return out
