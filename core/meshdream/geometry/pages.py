"""Texture pages: a texture space of several square images (UDIM tiles, or one image per material), and the atlas
that holds them side by side.

Texturing works on one square texture per mesh (the bake, the render-back and UV inpainting are all per texel), so
a mesh with pages is textured through its atlas: a copy whose UVs put page k into cell (k % grid, k // grid) of a
grid x grid layout (cell (0, 0) at the bottom left, like tile 1001), textured at grid times the page size in one
run, then cut back into pages. The same atlas is what a GLB gets for a UDIM layout (glTF has no UDIM).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Mapping, Optional

import numpy as np
import trimesh

from ..errors import InvalidParameterError
from .meshdata import mesh_info
from .padding import dilate
from .texture import as_float_image
from .unwrap import udim_tiles, uvs_usable

MATERIAL = "material"  # face attribute: index of each face's material in mesh_info(mesh).materials


@dataclass(frozen=True, eq=False)
class Pages:
    names: tuple[str, ...]  # page keys in page order: UDIM tile numbers ("1001", ...) or material names
    face_page: np.ndarray  # (F,) int64 page of each face
    origin: np.ndarray  # (P, 2) float64 UV of each page's lower-left corner in the mesh's layout
    udim: bool  # pages are UDIM tiles (else materials)

    @property
    def grid(self) -> int:
        """Cells per side of the atlas: the smallest power of two whose square holds every page."""
        g = 1
        while g * g < len(self.names):
            g *= 2
        return g

    @property
    def cell(self) -> np.ndarray:
        """(P, 2) int64 (column, row) of each page's atlas cell, row 0 at the bottom."""
        k = np.arange(len(self.names))
        return np.stack([k % self.grid, k // self.grid], axis=1)

    def to_atlas(self, uv: np.ndarray, page: np.ndarray) -> np.ndarray:
        """UVs (..., 2) on pages (...) -> their atlas UVs."""
        return (uv - self.origin[page] + self.cell[page]) / self.grid

    def _slices(self, k: int, size: int) -> tuple[slice, slice]:
        col, row = self.cell[k]
        top = (self.grid - 1 - row) * size  # image rows run downwards, v upwards
        return slice(top, top + size), slice(col * size, (col + 1) * size)

    def split(self, atlas: np.ndarray, coverage: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """The pages of an atlas image. coverage ((A, A) bool texels on the layout): each page's gutter is padded
        again from its own texels, so no colour of a neighbouring cell stays at its edges."""
        size = atlas.shape[0] // self.grid
        out = {}
        for k, name in enumerate(self.names):
            rows, cols = self._slices(k, size)
            page = np.ascontiguousarray(atlas[rows, cols])
            if coverage is not None:
                known = coverage[rows, cols]
                page = dilate(page, known, where=~known)
            out[name] = page
        return out

    def check_names(self, pages: Mapping[str, object], what: str = "texture") -> None:
        if set(pages) != set(self.names):
            kind = "UDIM tile" if self.udim else "material"
            raise InvalidParameterError(
                f"Got {what} pages {sorted(pages)} but the mesh's {kind}s are {list(self.names)}; pass one image per "
                f"{kind}, keyed by its name (TextureResult.textures)."
            )

    def pack(self, pages: Mapping[str, np.ndarray], what: str = "texture") -> np.ndarray:
        """One (grid * S)² float32 atlas from square page images of one size S, keyed by `names`."""
        self.check_names(pages, what)
        images = {k: as_float_image(v, None, f"{what} of page {k}") for k, v in pages.items()}
        shapes = sorted({v.shape for v in images.values()})
        if len(shapes) != 1 or shapes[0][0] != shapes[0][1]:
            raise InvalidParameterError(f"The {what} pages must be square and of one size, got {shapes}.")
        size, _, channels = shapes[0]
        atlas = np.zeros((self.grid * size, self.grid * size, channels), np.float32)
        for k, name in enumerate(self.names):
            atlas[self._slices(k, size)] = images[name]
        return atlas


def face_materials(mesh: trimesh.Trimesh) -> tuple[list[str], np.ndarray]:
    """(material names, (F,) int64 material of each face) as load_mesh recorded them; no materials: [] and 0s."""
    names = list(mesh_info(mesh).materials)
    index = mesh.face_attributes.get(MATERIAL)
    if index is None or len(index) != len(mesh.faces) or not names:
        return names, np.zeros(len(mesh.faces), np.int64)
    return names, np.asarray(index, np.int64)


def layout_pages(uv: np.ndarray, faces: np.ndarray, names: list[str], material: np.ndarray, per_material: bool):
    """The pages of a UV layout: its UDIM tiles when it has them, else one per material if `per_material` and
    there are several, else None (one plain texture)."""
    tiles = udim_tiles(uv, faces)
    if tiles is not None:
        numbers, page = np.unique(tiles, return_inverse=True)
        origin = np.stack([(numbers - 1001) % 10, (numbers - 1001) // 10], axis=1).astype(np.float64)
        return Pages(tuple(str(n) for n in numbers), page.astype(np.int64), origin, udim=True)
    if per_material and len(names) > 1:
        return Pages(tuple(names), material, np.zeros((len(names), 2)), udim=False)
    return None


def mesh_pages(mesh: trimesh.Trimesh, per_material: Optional[bool] = None) -> Optional[Pages]:
    """The texture pages of a mesh from load_mesh, None when one plain texture serves it.

    per_material: True one page per material; False one texture shared by every material (their UVs must not
    overlap each other); None per material only where the materials' UVs overlap each other. UDIM layouts are
    paged by tile and take one shared set of tiles for all materials.
    """
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        return None
    faces = np.asarray(mesh.faces, np.int64)
    names, material = face_materials(mesh)
    tiles = layout_pages(uv, faces, names, material, False)
    if tiles is not None:
        if per_material:
            raise InvalidParameterError(
                "per_material=True: this mesh's UVs span UDIM tiles, so its pages are the tiles and all materials "
                "share them; leave per_material unset (or False), or split the mesh by material first."
            )
        return tiles
    if len(names) > 1 and not per_material:
        shared = uvs_usable(uv, faces)
        if per_material is False and not shared:
            raise InvalidParameterError(
                f"per_material=False: the UVs of materials {names} overlap each other, so one texture cannot serve "
                "them; pass per_material=True (one texture per material), or load_mesh(..., unwrap='always') for "
                "one shared layout."
            )
        per_material = not shared
    return layout_pages(uv, faces, names, material, bool(per_material))


def atlas_mesh(mesh: trimesh.Trimesh, pages: Pages) -> trimesh.Trimesh:
    """A copy of `mesh` with its UVs moved into the atlas (vertices split where faces of two pages meet); faces
    keep their order, so face ids, face attributes and metadata mean the same as on `mesh`."""
    faces = np.asarray(mesh.faces, np.int64)
    n = len(pages.names)
    unique, inverse = np.unique((faces * n + pages.face_page[:, None]).ravel(), return_inverse=True)
    vertex, page = np.divmod(unique, n)
    uv = pages.to_atlas(np.asarray(mesh.visual.uv, np.float64)[vertex], page)
    out = trimesh.Trimesh(
        np.asarray(mesh.vertices)[vertex],
        inverse.reshape(-1, 3),
        visual=trimesh.visual.TextureVisuals(uv=uv),
        process=False,
    )
    out.face_attributes.update(mesh.face_attributes)
    out.metadata.update(copy.deepcopy(mesh.metadata))
    return out


def material_mesh(mesh: trimesh.Trimesh, name: str) -> trimesh.Trimesh:
    """The faces of one material of a mesh from load_mesh, as a mesh of its own in the same (normalized) frame."""
    names, material = face_materials(mesh)
    faces = np.asarray(mesh.faces, np.int64)[material == names.index(name)]
    used, inverse = np.unique(faces, return_inverse=True)
    out = trimesh.Trimesh(
        np.asarray(mesh.vertices)[used],
        inverse.reshape(-1, 3),
        visual=trimesh.visual.TextureVisuals(uv=np.asarray(mesh.visual.uv)[used]),
        process=False,
    )
    out.face_attributes[MATERIAL] = np.zeros(len(faces), np.int64)
    out.metadata.update(copy.deepcopy(mesh.metadata))
    replace(mesh_info(mesh), materials=(name,)).attach(out)
    return out
