"""Per-mesh data: what load_mesh recorded about a mesh (MeshInfo), and what is derived from its arrays (normals,
welded topology, UV charts, the Embree scene), computed once and cached.

Rendering and baking the same mesh many times (every denoising step of synchronized texturing does) must not
rebuild the ray-tracing scene or the UV raster each time. The cache is keyed on the mesh object and checked
against trimesh's content hash, so editing the mesh in place invalidates it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import InvalidMeshError
from .raycast import RayCaster
from .tangents import mikktspace


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


@dataclass
class MeshData:
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    uv: np.ndarray | None  # (V, 2) float64, OBJ convention (v = 0 at the bottom)
    _uv_maps: dict = field(default_factory=dict, repr=False)  # texture size -> UVMaps

    @cached_property
    def triangles(self) -> np.ndarray:
        return self.vertices[self.faces]

    @cached_property
    def face_normals(self) -> np.ndarray:
        t = self.triangles
        return _normalize(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]))

    @cached_property
    def position_id(self) -> np.ndarray:
        """Welded vertex id: vertices split only by UV seams share one id, so normals and seams see one surface."""
        _, inverse = trimesh.grouping.unique_rows(self.vertices, digits=6)
        return inverse.astype(np.int64)

    @cached_property
    def vertex_normals(self) -> np.ndarray:
        """Area-weighted smooth normals, averaged across UV seams (over welded positions)."""
        t = self.triangles
        weighted = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])  # length = 2 * area
        pid = self.position_id
        acc = np.zeros((pid.max() + 1, 3))
        np.add.at(acc, pid[self.faces].ravel(), np.repeat(weighted, 3, axis=0))
        return _normalize(acc)[pid]

    @cached_property
    def corner_positions(self) -> np.ndarray:
        """(F, 3, 3) float32 positions per face corner (the ray caster shares this buffer)."""
        return self.triangles.astype(np.float32)

    @cached_property
    def corner_normals(self) -> np.ndarray:
        """(F, 3, 3) float32 smooth normals per face corner."""
        return self.vertex_normals[self.faces].astype(np.float32)

    @cached_property
    def corner_uv(self) -> np.ndarray | None:
        """(F, 3, 2) float32 texture coordinates per face corner, None without UVs."""
        return None if self.uv is None else self.uv[self.faces].astype(np.float32)

    @cached_property
    def corner_tangents(self) -> tuple[np.ndarray, np.ndarray]:
        """MikkTSpace frames for the corner normals, as every viewer rebuilds them: ((F, 3, 3) float32 unit
        tangents, (F, 3) float32 bitangent signs); see tangents.py. Needs UVs."""
        if self.uv is None:
            raise InvalidMeshError("The mesh has no UV coordinates, so it has no tangents; load it with load_mesh().")
        return mikktspace(self.corner_positions, self.corner_normals, self.corner_uv)

    @cached_property
    def face_chart(self) -> np.ndarray:
        """UV chart of each face: faces connected through shared (unsplit) vertices."""
        f = self.faces
        n = len(f)
        rows = np.repeat(np.arange(n), 3)
        # Face-vertex incidence; faces sharing a vertex are connected. Components over faces+vertices.
        graph = coo_matrix((np.ones(3 * n, bool), (rows, n + f.ravel())), shape=(n + len(self.vertices),) * 2)
        _, labels = connected_components(graph, directed=False)
        _, chart = np.unique(labels[:n], return_inverse=True)
        return chart.astype(np.int32)

    @cached_property
    def caster(self) -> RayCaster:
        return RayCaster(self.corner_positions)

    @cached_property
    def uv_caster(self) -> RayCaster | None:
        """The UV layout as a flat mesh at z = 0 (rasterizing it is a ray cast; see uvmaps), None without UVs.
        Built once for every texture size: about 1 s at 1M faces."""
        if self.uv is None:
            return None
        return RayCaster(np.concatenate([self.uv, np.zeros((len(self.uv), 1))], axis=1)[self.faces])

    @cached_property
    def seam_edges(self) -> tuple[np.ndarray, ...]:
        """UV seams: manifold mesh edges (between welded positions) whose two faces use different UVs for them, as
        (a1, b1, f1, a2, b2, f2), each side's corner vertices (side 2 oriented like side 1) and face. Topology
        only, so every texture size shares it (the sort costs about 1 s at 1M faces)."""
        faces, pid = self.faces, self.position_id
        corner_a = faces.ravel()  # edge k of face f runs from corner k to corner k+1
        corner_b = faces[:, [1, 2, 0]].ravel()
        face_of = np.repeat(np.arange(len(faces)), 3)
        pa, pb = pid[corner_a], pid[corner_b]
        key = np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1)
        order = np.lexsort((key[:, 1], key[:, 0]))
        ks = key[order]
        same = np.all(ks[1:] == ks[:-1], axis=1)
        # Manifold edges: exactly two half-edges share the key.
        first = np.flatnonzero(same & np.r_[True, ~same[:-1]] & np.r_[~same[1:], True])
        e1, e2 = order[first], order[first + 1]
        # Orient side 2 like side 1 (same welded start point).
        flip = pa[e1] != pa[e2]
        a1, b1 = corner_a[e1], corner_b[e1]
        a2 = np.where(flip, corner_b[e2], corner_a[e2])
        b2 = np.where(flip, corner_a[e2], corner_b[e2])
        uv = self.uv  # a mesh with UVs: uv_maps checks
        seam = (np.abs(uv[a1] - uv[a2]).max(1) > 1e-6) | (np.abs(uv[b1] - uv[b2]).max(1) > 1e-6)
        return a1[seam], b1[seam], face_of[e1][seam], a2[seam], b2[seam], face_of[e2][seam]


def interpolate(
    per_corner: np.ndarray, face: np.ndarray, bary: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """(N, C) float32 values at N surface points (face ids, barycentrics) from (F, 3, C) per-corner values.

    Per-corner float32 arrays need one gather per point instead of two (vertex ids, then values), and np.take
    gathers rows ~4x faster than fancy indexing: ~10x faster in all than einsum over float64 vertex attributes.
    """
    return np.einsum("nk,nkc->nc", bary, np.take(per_corner, face, axis=0), out=out)


_CACHE: dict[int, tuple[int, MeshData]] = {}


def mesh_data(mesh: trimesh.Trimesh) -> MeshData:
    key, digest = id(mesh), hash(mesh)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == digest:
        return hit[1]
    if hit is None:
        weakref.finalize(mesh, _CACHE.pop, key, None)
    uv = getattr(mesh.visual, "uv", None)
    if uv is not None and len(uv) != len(mesh.vertices):
        uv = None
    data = MeshData(
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.faces, dtype=np.int64),
        None if uv is None else np.asarray(uv, dtype=np.float64),
    )
    _CACHE[key] = (digest, data)
    return data


_INFO = "meshdream"  # MeshInfo's key in mesh.metadata, which trimesh's copy() carries along


@dataclass(frozen=True, eq=False)
class MeshInfo:
    """What load_mesh found and did, carried by the mesh it returns (read it with `mesh_info(mesh)`): the way back to
    the file's coordinates, and which materials, UV layout and UV set of the file the texture follows.

    to_normalized: (4, 4) float64, read-only; file coordinates -> MeshDream's frame (bounding box centred, longest
        side 2, so cameras and tolerances mean the same on every mesh). A similarity: save_textured and
        to_user_frame apply its inverse, Camera.transformed(to_normalized) brings a user's camera along.
    unwrapped: the UVs are a fresh xatlas unwrap (the file had none usable), not the file's own.
    uv_set: the glTF TEXCOORD_n that was textured; 0 for every other format.
    materials: material names in file order, () without any; the face attribute "material" indexes them.
    udim_tiles: the UDIM tiles (1001, ...) of the kept UV layout, () if it is not UDIM.
    unwrap_seconds: the part of load_mesh's time spent unwrapping (0 without), so timings can report it apart.
    """

    to_normalized: np.ndarray
    unwrapped: bool
    uv_set: int
    materials: tuple[str, ...]
    udim_tiles: tuple[int, ...]
    unwrap_seconds: float

    def __post_init__(self):
        to_normalized = np.array(self.to_normalized, np.float64)
        to_normalized.flags.writeable = False
        object.__setattr__(self, "to_normalized", to_normalized)
        object.__setattr__(self, "materials", tuple(map(str, self.materials)))
        object.__setattr__(self, "udim_tiles", tuple(map(int, self.udim_tiles)))

    def __deepcopy__(self, memo) -> "MeshInfo":
        return self  # immutable: copies of a mesh share it (and its array stays read-only)

    def attach(self, mesh: trimesh.Trimesh) -> None:
        """Record this on `mesh` (load_mesh does, and a mesh derived from one in the same frame)."""
        mesh.metadata[_INFO] = self


def has_mesh_info(mesh) -> bool:
    """Whether `mesh` came from load_mesh (or was derived from one in the same frame). The MeshInfo object itself
    is the mark, not a dict: a GLB's extras come back into metadata as dicts and must not pass for one."""
    return isinstance(getattr(mesh, "metadata", {}).get(_INFO), MeshInfo)


def mesh_info(mesh) -> MeshInfo:
    """What load_mesh recorded about `mesh`; a clear error for any other mesh."""
    if not has_mesh_info(mesh):
        raise InvalidMeshError(
            "This mesh did not come from load_mesh, so its frame, materials and UV set are unknown; pass it through "
            "meshdream.load_mesh first."
        )
    return mesh.metadata[_INFO]
