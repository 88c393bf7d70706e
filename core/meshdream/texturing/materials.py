"""PBR maps for a finished base colour: roughness, metallic and a tangent-space normal map (issue 27).

Every map comes from the *finished* texture, so nothing can disagree about the base colour. A model that reads the
texture itself (the built-in one) sees it as one view whose every texel faces the camera in its tangent frame: its
estimates are the maps, texel for texel, and its normals the tangent-space normal map. A model that reads views
(photographic models: Marigold) gets views of the texture rendered with the base colour's cameras; its per-view
roughness, metallic, surface-detail normals (and, intrinsics models, a de-lit albedo) are baked with the same
cameras and view weights as the base colour. Those detail normals are rotated onto each pixel's rendered geometric
normal, baked in object space (where the two sides of a UV seam are the same vector), renormalized, and only then
turned into tangent space with MikkTSpace frames, the frame Blender and glTF viewers decode with.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Optional, Sequence

import numpy as np
import trimesh

from ..errors import InvalidParameterError, MeshDreamWarning
from ..generators.material_models import MaterialModel, check_material_views, load_material_model
from ..geometry import BakeOperator, Camera, ViewMaps, bake_operator, orbit_cameras, render_texture, render_views
from ..geometry.meshdata import interpolate, mesh_data
from ..geometry.pages import Pages, atlas_mesh, face_materials, layout_pages
from ..geometry.texture import as_float_image, check_texture_size
from ..geometry.uvmaps import require_uvs, uv_maps
from ..progress import CancelToken, ProgressCallback, Reporter
from .inpaint import inpaint_uv
from .maps import FLAT, padded


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


def check_delight(model: MaterialModel, delight: Optional[bool]) -> None:
    """delight=True asks for the model's albedo: a model without one is an error before any work is done."""
    if delight and not model.makes_albedo:
        raise InvalidParameterError(
            f"delight=True needs a material model that makes albedo (e.g. a Marigold intrinsics model); {model.name} "
            "does not: leave delight unset."
        )


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
        built-in one). cameras: for a model that reads views (not the texture itself), the views to estimate from
        (default orbit_cameras(n_views) at view_resolution, 512 px unless given); texture_mesh passes the cameras
        the texture was made with.
    delight: bake the model's albedo as the base colour (None: when the model makes one), so shading the views
        carried is not painted into the material.
    Returns {"base_color", "roughness", "metallic", "normal"} as TextureResult.maps describes; for pages,
    {page name: maps}.
    """
    require_uvs(mesh)
    model = resolve_material_model(material_model)
    check_delight(model, delight)
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
    if model.reads_texture:
        return texture_maps(mesh, texture, model, prompt, delight, progress, cancel)
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
    report("materials", 0, 3, "rendering the base colour")
    images = np.stack([render_texture(mesh, texture, c, 0.0, m) for c, m in zip(cameras, view_maps)])
    masks = np.stack([m.mask for m in view_maps])
    rotations = np.stack([c.rotation for c in cameras]).astype(np.float32)  # (V, 3, 3) world -> camera
    normals = np.einsum("vhwc,vdc->vhwd", np.stack([m.normal for m in view_maps]), rotations)
    report("materials", 1, 3, f"estimating materials ({model.name})")
    views, delight = estimate(model, images, masks, normals, prompt, delight, progress, cancel)
    report("materials", 2, 3, "baking the maps")
    world = np.einsum("vhwc,vcd->vhwd", on_geometry(views.normal, normals), rotations)  # camera -> world
    channels = [views.roughness[..., None], views.metallic[..., None], world]
    if delight:
        channels.append(views.albedo)
    stacked = np.where(masks[..., None], np.concatenate(channels, axis=-1), 0.0)  # off the mesh: ignored, maybe NaN
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


def texture_maps(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    model: MaterialModel,
    prompt: str = "",
    delight: Optional[bool] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> dict:
    """The maps of a model that reads the texture itself (MaterialModel.reads_texture): the (S, S, 3) texture is its
    one view, mask the covered texels, every geometric normal (0, 0, 1); gutters padded from the covered texels."""
    report = Reporter(progress, cancel)
    size = texture.shape[0]
    covered = uv_maps(mesh, size).coverage
    facing = np.zeros((1, size, size, 3), np.float32)
    facing[..., 2] = 1.0
    report("materials", 0, 2, f"estimating materials ({model.name})")
    est, delight = estimate(model, texture[None], covered[None], facing, prompt, delight, progress, cancel)
    report("materials", 1, 2, "padding the maps")
    normal = facing[0] if est.normal is None else est.normal[0].copy()
    normal[..., 2] = np.maximum(normal[..., 2], 0.05)  # a detail normal never faces into the surface
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    scalars = np.stack([est.roughness[0], est.metallic[0], np.zeros((size, size), np.float32)], axis=-1)
    stacked = np.concatenate([np.clip(scalars, 0.0, 1.0), normal * 0.5 + 0.5], axis=-1)
    if delight:
        stacked = np.concatenate([stacked, np.clip(est.albedo[0], 0.0, 1.0)], axis=-1)
    off = np.concatenate([np.zeros(3, np.float32), FLAT, np.zeros(3, np.float32)])[: stacked.shape[-1]]
    stacked = padded(mesh, np.where(covered[..., None], stacked, off).astype(np.float32))
    report("materials", 2, 2)
    return {
        "base_color": stacked[..., 6:9].copy() if delight else texture,
        "roughness": stacked[..., 0].copy(),
        "metallic": stacked[..., 1].copy(),
        "normal": stacked[..., 3:6].copy(),
    }


def estimate(model: MaterialModel, images, masks, normals, prompt, delight, progress, cancel):
    """The model's estimates, checked against the (V, H, W) asked for, and whether to de-light (None: when the
    model makes albedo); a model that says it makes albedo but gave none is an error."""
    delight = model.makes_albedo if delight is None else bool(delight)
    views = check_material_views(model.estimate(images, masks, normals, prompt, progress, cancel), masks.shape)
    if delight and views.albedo is None:
        raise InvalidParameterError(f"{model.name} says it makes albedo but gave none; pass delight=False.")
    return views, delight


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
