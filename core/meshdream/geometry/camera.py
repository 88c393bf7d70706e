"""Pinhole cameras in the convention DCC tools use: world-to-camera 4x4, camera looks down -Z with +Y up.

A Blender camera's `matrix_world.inverted()` (or any OpenGL view matrix) plugs in directly; pixel (row i,
column j) has its centre at (j + 0.5, i + 0.5) and depth is the distance along the viewing axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import CameraError, InvalidParameterError


def _resolution(resolution: int | Sequence[int]) -> tuple[int, int]:
    """(width, height) from an int (square) or a (width, height) pair."""
    w, h = (resolution, resolution) if np.isscalar(resolution) else resolution
    if int(w) != w or int(h) != h or w < 1 or h < 1:
        raise InvalidParameterError(f"Resolution {resolution!r} must be positive whole pixels, e.g. 512 or (640, 480).")
    return int(w), int(h)


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera looking down its -Z with +Y up (OpenGL / Blender), so DCC view matrices plug in unchanged.

    world_to_camera: (4, 4) float64 rigid transform (rotation and translation, no scale, so depths stay in world
        units) from the frame of the mesh it views; for a mesh from load_mesh that is the normalized frame (longest
        side 2), and `transformed` brings a camera given in the file's frame there.
    fx, fy: focal lengths in pixels (equal: every constructor makes square pixels).
    cx, cy: the principal point in pixels from the image's top-left corner, x right and y down; the image centre
        for every constructor.
    width, height: image size in pixels; its renders and the view images baked through it are (height, width).
    Frozen, compared by identity (its matrix is an array): derive others with transformed / resized.
    """

    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    # --- constructors -------------------------------------------------------------------------------------
    @classmethod
    def from_view_matrix(cls, view: np.ndarray, fov: float = 40.0, resolution: int | Sequence[int] = 512) -> "Camera":
        """From a 4x4 world-to-camera (view) matrix and a field of view in degrees across the larger image side
        (Blender's automatic sensor fit). A uniform scale in the matrix is removed; shear is an error."""
        view = np.asarray(view, dtype=np.float64)
        if view.shape != (4, 4) or not np.isfinite(view).all():
            raise CameraError(f"A view matrix must be a finite 4x4 array, got shape {view.shape}.")
        if not 1.0 <= fov <= 170.0:
            raise CameraError(f"Field of view {fov} degrees is out of range; use 1 to 170 degrees (40 is typical).")
        rot = view[:3, :3]
        scale = np.cbrt(np.linalg.det(rot))
        if not scale > 0 or not np.allclose(rot @ rot.T / scale**2, np.eye(3), atol=1e-4):
            raise CameraError(
                "The view matrix is not a rotation plus translation (it has shear, mirroring or zero scale). "
                "Pass the inverse of the camera's world matrix, e.g. camera.matrix_world.inverted() in Blender."
            )
        rigid = np.eye(4)
        rigid[:3] = view[:3] / scale
        w, h = _resolution(resolution)
        f = 0.5 * max(w, h) / np.tan(np.radians(fov) / 2)
        return cls(rigid, f, f, w / 2, h / 2, w, h)

    @classmethod
    def look_at(
        cls,
        eye: Sequence[float],
        target: Sequence[float] = (0.0, 0.0, 0.0),
        up: Sequence[float] = (0.0, 1.0, 0.0),
        fov: float = 40.0,
        resolution: int | Sequence[int] = 512,
    ) -> "Camera":
        eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
        back = eye - target
        if np.linalg.norm(back) == 0:
            raise CameraError("The camera position equals its target; move the camera away from what it looks at.")
        back /= np.linalg.norm(back)
        right = np.cross(up, back)
        if np.linalg.norm(right) < 1e-6:  # looking straight along `up`: any perpendicular will do
            right = np.cross(np.eye(3)[np.argmin(np.abs(back))], back)
        right /= np.linalg.norm(right)
        cam_up = np.cross(back, right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, eye
        return cls.from_view_matrix(np.linalg.inv(c2w), fov, resolution)

    # --- geometry -----------------------------------------------------------------------------------------
    @property
    def rotation(self) -> np.ndarray:
        return self.world_to_camera[:3, :3]

    @property
    def position(self) -> np.ndarray:
        return -self.rotation.T @ self.world_to_camera[:3, 3]

    @property
    def fov(self) -> float:
        """Field of view in degrees across the larger image side."""
        return float(np.degrees(2 * np.arctan(0.5 * max(self.width, self.height) / self.fx)))

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) as (x = column, y = row) and depth (N,)."""
        cam = points @ self.rotation.T + self.world_to_camera[:3, 3]
        depth = -cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = np.stack([self.fx * cam[:, 0] / depth + self.cx, -self.fy * cam[:, 1] / depth + self.cy], axis=-1)
        return xy, depth

    def pixel_directions(self, xy: np.ndarray | None = None) -> np.ndarray:
        """Camera-space ray directions scaled to unit depth (z = -1), for pixel coordinates `xy` (default: every
        pixel centre, row-major)."""
        if xy is None:
            j, i = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
            xy = np.stack([j.ravel(), i.ravel()], axis=-1)
        return np.stack([(xy[:, 0] - self.cx) / self.fx, -(xy[:, 1] - self.cy) / self.fy, -np.ones(len(xy))], axis=-1)

    def transformed(self, similarity: np.ndarray) -> "Camera":
        """The same view of a scene that `similarity` (uniform scale, rotation, translation) moved: use it to bring a
        camera given in a user's coordinates into a normalized mesh's frame (see `load_mesh`)."""
        s = np.cbrt(np.linalg.det(similarity[:3, :3]))
        rot, trans = similarity[:3, :3] / s, similarity[:3, 3]
        w2c = np.eye(4)
        w2c[:3, :3] = self.rotation @ rot.T
        w2c[:3, 3] = s * self.world_to_camera[:3, 3] - w2c[:3, :3] @ trans
        return Camera(w2c, self.fx, self.fy, self.cx, self.cy, self.width, self.height)

    def resized(self, scale: float) -> "Camera":
        """The same view with `scale` times as many pixels along each side (same field of view)."""
        w, h = int(round(self.width * scale)), int(round(self.height * scale))
        sx, sy = w / self.width, h / self.height
        return Camera(self.world_to_camera, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, w, h)

    def scaled(self, factor: int) -> "Camera":
        """The same view at 1/factor of the resolution (e.g. a diffusion model's latent grid)."""
        if self.width % factor or self.height % factor:
            raise InvalidParameterError(f"A {self.width}x{self.height} view cannot be divided by {factor}.")
        return Camera(
            self.world_to_camera,
            self.fx / factor,
            self.fy / factor,
            self.cx / factor,
            self.cy / factor,
            self.width // factor,
            self.height // factor,
        )

    def to_dict(self) -> dict:
        return {
            "world_to_camera": self.world_to_camera.tolist(),
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(
            np.asarray(d["world_to_camera"], dtype=np.float64),
            float(d["fx"]),
            float(d["fy"]),
            float(d["cx"]),
            float(d["cy"]),
            int(d["width"]),
            int(d["height"]),
        )


def default_elevations(n: int, bottom: bool = True) -> list[float]:
    """Elevations (degrees) for `n` orbit views: a ring alternating slightly above and below the equator, and for
    six views or more one view from the top and one from below, the directions a ring never sees well. Without
    `bottom` (a surface open below, which a view from there would see only from behind), the first view looks
    from the top and the rest ring the rim from above and level with it."""
    if not bottom:
        return [89.0] + [25.0 if k % 2 == 0 else 0.0 for k in range(n - 1)]
    if n < 6:
        return [15.0 if k % 2 == 0 else -10.0 for k in range(n)]
    return [25.0 if k % 2 == 0 else -15.0 for k in range(n - 2)] + [89.0, -89.0]


# A mesh whose area-weighted normals lie this close to one axis (the largest eigenvalue of their second moment)
# is flat for view placement: a plane, card, decal, leaf, terrain patch or 2D outline.
FLAT_NORMALS = 0.9
# An open mesh whose area-weighted mean normal is at least this long faces one way (a dome, a shell, a sheet):
# its orbit turns around that direction. Closed meshes have a mean normal of zero.
OPEN_FACING = 0.25
SIDE_AREA = 0.02  # a side of a flat mesh gets views if at least this fraction of the area faces it
FLAT_TILT = 35.0  # degrees between a flat mesh's normal and the views around the straight-on one


def _surface_normals(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3) unit face normals and (F,) areas as fractions of the whole surface."""
    tri = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(length, 1e-30)[:, None], length / max(length.sum(), 1e-30)


def _orbit_directions(elevations: Sequence[float], up: np.ndarray, front: np.ndarray) -> np.ndarray:
    """(n, 3) unit directions towards the cameras of a ring around `up` (azimuth 0 at `front`); near-polar views
    need no azimuth, so the ring's azimuths are spread over the others."""
    side = np.cross(up, front)
    el = np.radians(np.asarray(elevations, dtype=np.float64))
    ring = np.abs(el) < np.radians(80)
    az = np.zeros(len(el))
    az[ring] = 2 * np.pi * np.arange(ring.sum()) / max(ring.sum(), 1)
    horizontal = np.cos(az)[:, None] * front + np.sin(az)[:, None] * side
    return np.cos(el)[:, None] * horizontal + np.sin(el)[:, None] * up


def _flat_directions(n: int, axis: np.ndarray, normals: np.ndarray, area: np.ndarray, up, front) -> np.ndarray:
    """Views of a flat mesh: on each side of it that surface faces (one side for a single-sided card, both for a
    two-sided one), the first straight on and the rest tilted around the normal, never edge-on."""
    facing = normals @ axis
    share = np.array([area[facing > 0].sum(), area[facing < 0].sum()])
    signs = np.array([1.0, -1.0])[share >= SIDE_AREA * share.sum()]
    counts = np.full(len(signs), n // len(signs)) + (np.arange(len(signs)) < n % len(signs))
    # The tilts start towards the world's up, so the first tilted view looks at the card from slightly above.
    ref = up - axis * (up @ axis)
    ref = ref if np.linalg.norm(ref) > 1e-6 else front - axis * (front @ axis)
    ref /= np.linalg.norm(ref)
    other = np.cross(axis, ref)
    tilt = np.radians(FLAT_TILT)
    out = []
    for sign, count in zip(signs[counts > 0], counts[counts > 0]):
        az = 2 * np.pi * np.arange(count - 1) / max(count - 1, 1)
        around = np.cos(az)[:, None] * ref + np.sin(az)[:, None] * other
        out += [sign * axis[None], np.cos(tilt) * sign * axis + np.sin(tilt) * around]
    return np.concatenate(out)


def _view_directions(n: int, mesh, elevations, up: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Where the cameras sit, as unit directions from the mesh. Closed meshes (and any mesh given `elevations`) get
    the default orbit around the world's up; flat meshes get views around their normal on the sides their surface
    faces; open meshes that face one way get the orbit turned around the direction they face, so no ring view
    looks only at the back of the surface."""
    if mesh is not None and elevations is None:
        normals, area = _surface_normals(mesh)
        moment = np.einsum("f,fi,fj->ij", area, normals, normals)
        eigval, eigvec = np.linalg.eigh(moment)
        if eigval[-1] >= FLAT_NORMALS:
            return _flat_directions(n, eigvec[:, -1], normals, area, up, front)
        mean = area @ normals
        if np.linalg.norm(mean) >= OPEN_FACING:
            facing = mean / np.linalg.norm(mean)
            turned = front - facing * (front @ facing)
            turned = turned if np.linalg.norm(turned) > 1e-6 else up - facing * (up @ facing)
            return _orbit_directions(default_elevations(n, bottom=False), facing, turned / np.linalg.norm(turned))
    elevations = default_elevations(n) if elevations is None else list(elevations)
    if len(elevations) != n:
        raise InvalidParameterError(f"Got {len(elevations)} elevations for {n} views; give one per view.")
    return _orbit_directions(elevations, up, front)


def orbit_cameras(
    n: int,
    resolution: int | Sequence[int] = 512,
    fov: float = 40.0,
    mesh=None,
    elevations: Sequence[float] | None = None,
    up: Sequence[float] = (0.0, 1.0, 0.0),
    margin: float = 0.05,
) -> list[Camera]:
    """`n` cameras around the mesh, each framing it tightly (the whole mesh fits with `margin` to spare).

    Directions follow the mesh's own surface (see `_view_directions`): a closed mesh gets the default orbit, a flat
    or open one views that face its surface. Framing is exact and closed-form: for each direction, the distance
    and the image-plane offset of the target are the smallest that keep every vertex inside the frustum.
    Without a mesh, the normalized unit cube [-1, 1]^3 is framed. Azimuth 0 looks at the mesh's front (+Z), `up`
    is the world's up axis (it also keeps every image upright).
    """
    if int(n) != n or n < 1:
        raise InvalidParameterError(f"Number of views {n!r} must be a positive whole number (8 is typical).")
    w, h = _resolution(resolution)
    if mesh is None:
        points = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T.astype(np.float64)
    else:
        # All vertices, not the hull's: the extremes of linear functions are the same, and qhull fails on flat meshes.
        points = np.asarray(mesh.vertices, dtype=np.float64)
    center = 0.5 * (points.min(0) + points.max(0))
    rel = points - center

    up = np.asarray(up, dtype=np.float64)
    up /= np.linalg.norm(up)
    # Front direction: +Z unless up is (close to) Z, then -Y (Blender's front view looks along +Y).
    front = np.array([0.0, 0.0, 1.0]) if abs(up[2]) < 0.9 else np.array([0.0, -1.0, 0.0])
    front -= up * (front @ up)
    front /= np.linalg.norm(front)
    side = np.cross(up, front)

    f = 0.5 * max(w, h) / np.tan(np.radians(fov) / 2)
    tx, ty = (1 - margin) * 0.5 * w / f, (1 - margin) * 0.5 * h / f  # tangent of the half-angles kept free
    cameras = []
    for back in _view_directions(int(n), mesh, elevations, up, front):
        right = np.cross(up, back)
        if np.linalg.norm(right) < 1e-6:
            right = side
        right /= np.linalg.norm(right)
        cam_up = np.cross(back, right)
        x, y, z = rel @ right, rel @ cam_up, rel @ back
        # |x - a| <= tx * (D - z) for all points  <=>  D >= (max(x + tx z) - min(x - tx z)) / (2 tx)
        dist = max(
            (np.max(x + tx * z) - np.min(x - tx * z)) / (2 * tx), (np.max(y + ty * z) - np.min(y - ty * z)) / (2 * ty)
        )
        a = 0.5 * (np.max(x + tx * z) + np.min(x - tx * z))
        b = 0.5 * (np.max(y + ty * z) + np.min(y - ty * z))
        target = center + a * right + b * cam_up
        cameras.append(Camera.look_at(target + dist * back, target, cam_up, fov, (w, h)))
    return cameras
