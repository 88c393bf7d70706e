"""MikkTSpace tangents (issue 27): the frame every viewer decodes normal maps with, checked against Blender's own."""

import meshdream
import numpy as np
import pytest
import trimesh
from meshdream.geometry.meshdata import mesh_data
from meshdream.geometry.tangents import mikktspace

from tests.conftest import asset


def _mesh(name: str):
    if name == "sphere":
        return meshdream.load_mesh(trimesh.creation.uv_sphere(count=[24, 32]))
    return meshdream.load_mesh(asset(f"{name}.obj"))


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.einsum("nc,nc->n", a, b), -1.0, 1.0)))


@pytest.mark.parametrize("name", ["suzanne", "spot", "sphere"])
def test_tangents_match_blenders_mikktspace(name):
    bpy = pytest.importorskip("bpy")
    mesh = _mesh(name)
    md = mesh_data(mesh)
    pid = md.position_id
    verts = np.zeros((pid.max() + 1, 3))
    verts[pid] = md.vertices
    me = bpy.data.meshes.new(f"tangents_{name}")
    me.from_pydata(verts.tolist(), [], pid[md.faces].tolist())
    me.uv_layers.new(name="UV").data.foreach_set("uv", md.corner_uv.reshape(-1))
    me.shade_smooth()
    me.normals_split_custom_set(md.corner_normals.reshape(-1, 3).tolist())
    me.calc_tangents(uvmap="UV")
    n = len(me.loops)
    theirs, sign, normal = np.empty(3 * n, np.float32), np.empty(n, np.float32), np.empty(3 * n, np.float32)
    me.loops.foreach_get("tangent", theirs)
    me.loops.foreach_get("bitangent_sign", sign)
    me.loops.foreach_get("normal", normal)
    theirs, normal = theirs.reshape(-1, 3), normal.reshape(-1, 3)
    bpy.data.meshes.remove(me)

    ours, our_sign = (a.reshape(n, -1) for a in md.corner_tangents)
    # Blender stores custom normals compressed (and refuses a few, e.g. normals across their own face), and leaves
    # tangents of UV-degenerate triangles at zero: those corners are not comparable.
    comparable = (_angle(md.corner_normals.reshape(-1, 3), normal) < 0.1) & (np.linalg.norm(theirs, axis=1) > 0.5)
    assert comparable.mean() > 0.99
    angle = _angle(ours, theirs)[comparable]
    assert angle.max() < 0.1, f"{name}: tangents differ from Blender's by up to {angle.max():.3f} degrees"
    assert (our_sign[:, 0] == sign)[comparable].all()
    # Given Blender's own (decompressed) normals, every corner with a tangent in Blender agrees.
    again, again_sign = mikktspace(md.corner_positions, normal.reshape(-1, 3, 3), md.corner_uv)
    has = np.linalg.norm(theirs, axis=1) > 0.5
    assert _angle(again.reshape(-1, 3), theirs)[has].max() < 0.1
    assert (again_sign.reshape(-1) == sign)[has].all()


def test_tangents_follow_the_uv_directions():
    """On a plane whose u runs along -x and v along +y (mirrored), the tangent is -x and the sign -1."""
    positions = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 1, 0], [0, 1, 0]]], np.float64)
    normals = np.broadcast_to([0.0, 0.0, 1.0], positions.shape)
    uv = 1.0 - positions[..., :2]
    uv[..., 1] = positions[..., 1]
    tangent, sign = mikktspace(positions, normals, uv)
    np.testing.assert_allclose(tangent.reshape(-1, 3), np.tile([-1.0, 0.0, 0.0], (6, 1)), atol=1e-6)
    assert (sign == -1).all()
    tangent, sign = mikktspace(positions, normals, positions[..., :2])
    np.testing.assert_allclose(tangent.reshape(-1, 3), np.tile([1.0, 0.0, 0.0], (6, 1)), atol=1e-6)
    assert (sign == 1).all()
