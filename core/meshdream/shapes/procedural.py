"""Procedural training shapes: categories built from trimesh primitives with random proportions.

A shape is a constructive solid: the union of positive parts minus the union of negative ones (a mug's cavity).
Surface points are drawn area-weighted from every part's trimesh primitive and kept only where they lie on the
solid's outer surface, which each part's analytic distance function decides; so parts may overlap freely and no
interior faces leak into the clouds. Y is up (the glTF convention), and a shape's seed fixes it completely, which
is what makes the train / held-out split a split by seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import trimesh
from trimesh.transformations import rotation_matrix

from ..errors import InvalidParameterError

# Seeds of held-out shapes start here; training uses seeds below it, so the two sets never share a shape.
HELDOUT_SEED0 = 1_000_000
# A surface sample of one part counts as inside another part only when this far inside (relative to shape size).
_INSIDE_TOL = 1e-3
_SECTIONS = 40


@dataclass(frozen=True)
class Part:
    kind: str  # box | cylinder | sphere | capsule | torus | revolve; cylinders, capsules, tori, revolves: axis z
    size: tuple  # box (ex, ey, ez); cylinder/capsule (radius, height); sphere (radius,); torus (R, r); revolve profile
    transform: np.ndarray  # 4x4 local -> shape (rotation + translation)
    negative: bool = False  # carved out of the union of positive parts

    def mesh(self) -> trimesh.Trimesh:
        s, c = self.size, trimesh.creation
        if self.kind == "box":
            m = c.box(extents=s)
        elif self.kind == "cylinder":
            m = c.cylinder(radius=s[0], height=s[1], sections=_SECTIONS)
        elif self.kind == "sphere":
            m = c.icosphere(subdivisions=3, radius=s[0])
        elif self.kind == "capsule":
            m = c.capsule(height=s[1], radius=s[0], count=[_SECTIONS, _SECTIONS // 2])
        elif self.kind == "torus":
            m = c.torus(s[0], s[1], major_sections=_SECTIONS, minor_sections=16)
        elif self.kind == "revolve":
            m = c.revolve(np.asarray(s, dtype=np.float64), sections=_SECTIONS)
        else:
            raise ValueError(self.kind)
        m.apply_transform(self.transform)
        return m

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (negative inside); exact for boxes, spheres, cylinders, capsules and tori, and of the
        right sign (all the surface filter needs) for revolved profiles."""
        inv = np.linalg.inv(self.transform)
        p = points @ inv[:3, :3].T + inv[:3, 3]
        s = self.size
        if self.kind == "box":
            return _box2(np.abs(p) - np.asarray(s) / 2)
        if self.kind == "sphere":
            return np.linalg.norm(p, axis=1) - s[0]
        radial = np.linalg.norm(p[:, :2], axis=1)
        if self.kind == "cylinder":
            return _box2(np.stack([radial - s[0], np.abs(p[:, 2]) - s[1] / 2], 1))
        if self.kind == "capsule":
            z = np.clip(p[:, 2], -s[1] / 2, s[1] / 2)
            return np.hypot(radial, p[:, 2] - z) - s[0]
        if self.kind == "torus":
            return np.hypot(radial - s[0], p[:, 2]) - s[1]
        prof = np.asarray(s)  # revolve: (radius, z) rows, z increasing
        inner = prof[1:-1]
        r = np.interp(p[:, 2], inner[:, 1], inner[:, 0])
        return np.maximum(radial - r, np.maximum(prof[0, 1] - p[:, 2], p[:, 2] - prof[-1, 1]))


def _box2(q: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


@dataclass(frozen=True)
class Shape:
    category: str
    parts: tuple[Part, ...]
    tags: tuple[str, ...] = ()  # attribute words true of this shape ("tall", "round", ...), for prompt conditioning
    seed: int = 0

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` points uniform on the solid's outer surface, (n, 3) float64 in the shape's own frame."""
        meshes = [p.mesh() for p in self.parts]
        tris = np.concatenate([m.triangles for m in meshes])
        owner = np.repeat(np.arange(len(meshes)), [len(m.faces) for m in meshes])
        area = np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
        scale = np.ptp(tris.reshape(-1, 3), axis=0).max()
        kept = np.zeros((0, 3))
        count = 3 * n
        while len(kept) < n:  # rarely more than once: overlaps hide under half of the area
            face = rng.choice(len(tris), count, p=area / area.sum())
            u, v = rng.random((2, count))
            flip = u + v > 1
            u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
            t = tris[face]
            pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
            keep = self._on_surface(pts, owner[face], _INSIDE_TOL * scale)
            kept = np.concatenate([kept, pts[keep]])
            count *= 2
        return kept[rng.choice(len(kept), n, replace=False)]

    def _on_surface(self, pts: np.ndarray, owner: np.ndarray, tol: float) -> np.ndarray:
        """A positive part's sample is on the surface unless inside another positive part or in any negative one;
        a negative part's sample is, when inside some positive part and in no other negative one."""
        d = np.stack([p.sdf(pts) for p in self.parts], 1)  # (M, parts)
        neg = np.array([p.negative for p in self.parts])
        d[np.arange(len(pts)), owner] = np.inf  # a part does not hide its own surface
        in_pos = (d[:, ~neg] < -tol).any(1)
        in_neg = (d[:, neg] < tol).any(1) if neg.any() else np.zeros(len(pts), bool)
        return np.where(neg[owner], in_pos, ~in_pos) & ~in_neg

    def mesh(self) -> trimesh.Trimesh:
        """The positive parts' primitives in one (overlapping, not boolean-merged) mesh, for a quick look."""
        return trimesh.util.concatenate([p.mesh() for p in self.parts if not p.negative])


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre the bounding box at the origin and scale the farthest point to radius 1 (per cloud, last two axes),
    the one normalization used for training data, generated clouds and evaluation alike."""
    lo, hi = points.min(axis=-2, keepdims=True), points.max(axis=-2, keepdims=True)
    centred = points - (lo + hi) / 2
    return centred / np.linalg.norm(centred, axis=-1, keepdims=True).max(axis=-2, keepdims=True)


def normalize_cloud(points: np.ndarray) -> np.ndarray:
    """normalize for point clouds as the models give and take them: computed in float64, returned as float32."""
    return normalize(np.asarray(points, np.float64)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- builders
_UP = rotation_matrix(-np.pi / 2, [1, 0, 0])  # primitive axis z -> y (vertical)
_ALONG_X = rotation_matrix(np.pi / 2, [0, 1, 0])  # primitive axis z -> x


def _at(x=0.0, y=0.0, z=0.0, rot=None) -> np.ndarray:
    t = np.eye(4) if rot is None else np.array(rot, dtype=np.float64)
    t[:3, 3] = (x, y, z)
    return t


def box(ex, ey, ez, x=0.0, y=0.0, z=0.0, rot=None) -> Part:
    return Part("box", (ex, ey, ez), _at(x, y, z, rot))


def vcyl(r, h, x=0.0, y0=0.0, z=0.0, negative=False) -> Part:
    """Vertical cylinder standing on height y0."""
    return Part("cylinder", (r, h), _at(x, y0 + h / 2, z, _UP), negative)


def vrev(profile, x=0.0, y0=0.0, z=0.0) -> Part:
    """Vertical solid of revolution from (radius, height) rows, closed at both ends, standing on y0."""
    prof = np.asarray(profile, dtype=np.float64)
    prof = np.vstack([[0.0, prof[0, 1]], prof, [0.0, prof[-1, 1]]])
    return Part("revolve", tuple(map(tuple, prof)), _at(x, y0, z, _UP))


def _legs(half_x, half_z, y0, height, thick, round_legs, n=4, splay=0.0) -> list[Part]:
    if n == 3:
        ang = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        spots = np.stack([np.cos(ang) * half_x, np.sin(ang) * half_z], 1)
    else:
        spots = np.array([[sx * half_x, sz * half_z] for sx in (-1, 1) for sz in (-1, 1)])
    parts = []
    for x, z in spots:
        tilt = np.eye(4)
        if splay:  # lean the foot outwards
            axis = np.array([z, 0.0, -x])
            tilt = rotation_matrix(-splay, axis / (np.linalg.norm(axis) + 1e-12))
        rot = tilt @ (_UP if round_legs else np.eye(4))
        dx, dz = np.sin(splay) * height / 2 * np.array([x, z]) / (np.hypot(x, z) + 1e-12)
        if round_legs:
            parts.append(Part("cylinder", (thick / 2, height), _at(x + dx, y0 + height / 2, z + dz, rot)))
        else:
            parts.append(Part("box", (thick, height, thick), _at(x + dx, y0 + height / 2, z + dz, rot)))
    return parts


def _aspect_tags(ratio: float, lo: float, hi: float) -> tuple[str, ...]:
    """'tall' / 'short' for the top / bottom of a category's height-to-width range."""
    return ("tall",) if ratio > hi else ("short",) if ratio < lo else ()


def chair(rng) -> Shape:
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.58)
    seat_y, seat_t = rng.uniform(0.38, 0.5), rng.uniform(0.04, 0.08)
    back_h, back_t, leg_t = rng.uniform(0.25, 0.7), rng.uniform(0.03, 0.07), rng.uniform(0.03, 0.06)
    round_legs, arms = rng.random() < 0.4, rng.random() < 0.35
    parts = [box(w, seat_t, d, y=seat_y - seat_t / 2)]
    parts += _legs(w / 2 - leg_t, d / 2 - leg_t, 0.0, seat_y - seat_t / 2, leg_t, round_legs)
    parts.append(box(w, back_h, back_t, y=seat_y + back_h / 2 - 0.01, z=-d / 2 + back_t / 2))
    if arms:
        arm_y, arm_t = seat_y + rng.uniform(0.15, 0.25), rng.uniform(0.04, 0.07)
        for sx in (-1, 1):
            x = sx * (w / 2 - arm_t / 2)
            parts.append(box(arm_t, arm_t * 0.7, d, x=x, y=arm_y, z=0.0))
            parts.append(
                box(arm_t * 0.7, arm_y - seat_y + 0.02, arm_t * 0.7, x=x, y=(arm_y + seat_y) / 2, z=d / 2 - arm_t)
            )
    tags = _aspect_tags((seat_y + back_h) / max(w, d), 1.45, 1.8) + (("arms",) if arms else ())
    return Shape("chair", tuple(parts), tags)


def table(rng) -> Shape:
    h, top_t = rng.uniform(0.42, 0.8), rng.uniform(0.03, 0.07)
    round_top = rng.random() < 0.45
    leg_t = rng.uniform(0.04, 0.08)
    if round_top:
        r = rng.uniform(0.35, 0.65)
        parts = [vcyl(r, top_t, y0=h - top_t)]
        if rng.random() < 0.5:
            foot_r = r * rng.uniform(0.4, 0.7)
            parts += [vcyl(leg_t * 1.2, h - top_t + 0.01), vcyl(foot_r, rng.uniform(0.02, 0.05))]
        else:
            s = r * 0.62
            parts += _legs(s, s, 0.0, h - top_t + 0.01, leg_t, True, n=int(rng.choice([3, 4])))
        width = 2 * r
    else:
        lx, lz = rng.uniform(0.7, 1.6), rng.uniform(0.45, 0.9)
        parts = [box(lx, top_t, lz, y=h - top_t / 2)]
        parts += _legs(lx / 2 - leg_t, lz / 2 - leg_t, 0.0, h - top_t + 0.01, leg_t, rng.random() < 0.4)
        width = lx
    tags = ("round",) if round_top else ("square",)
    return Shape("table", tuple(parts), tags + _aspect_tags(h / width, 0.45, 0.75))


def stool(rng) -> Shape:
    h, seat_t, r = rng.uniform(0.4, 0.8), rng.uniform(0.03, 0.06), rng.uniform(0.14, 0.22)
    round_seat = rng.random() < 0.55
    leg_t, n = rng.uniform(0.025, 0.045), int(rng.choice([3, 4]))
    splay = rng.uniform(0.0, 0.12)
    parts = [vcyl(r, seat_t, y0=h - seat_t) if round_seat else box(2 * r, seat_t, 2 * r, y=h - seat_t / 2)]
    s = r * 0.7
    parts += _legs(s, s, 0.0, h - seat_t + 0.01, leg_t, True, n=n, splay=splay)
    if round_seat and rng.random() < 0.5:
        ring_r = s + np.sin(splay) * h * 0.35
        parts.append(Part("torus", (ring_r, leg_t * 0.4), _at(y=h * 0.3, rot=_UP)))
    tags = ("round",) if round_seat else ("square",)
    return Shape("stool", tuple(parts), tags + _aspect_tags(h / (2 * r), 1.6, 2.3))


def lamp(rng) -> Shape:
    pole_h, pole_r = rng.uniform(0.3, 1.5), rng.uniform(0.01, 0.025)
    base_t, base_r = rng.uniform(0.02, 0.05), rng.uniform(0.09, 0.2)
    square_base = rng.random() < 0.35
    shade_h = rng.uniform(0.15, 0.32)
    r_bot, r_top = rng.uniform(0.12, 0.25), rng.uniform(0.05, 0.16)
    parts = [box(2 * base_r, base_t, 2 * base_r, y=base_t / 2) if square_base else vcyl(base_r, base_t)]
    parts.append(vcyl(pole_r, pole_h + 0.02, y0=base_t - 0.01))
    y0 = base_t + pole_h - shade_h * 0.4
    parts.append(vrev([[r_bot, 0.0], [r_top, shade_h]], y0=y0))
    tags = ("square",) if square_base else ("round",)
    return Shape("lamp", tuple(parts), tags + _aspect_tags((y0 + shade_h) / (2 * max(r_bot, base_r)), 2.5, 4.0))


def mug(rng) -> Shape:
    r, h = rng.uniform(0.035, 0.06), rng.uniform(0.07, 0.13)
    wall, floor = r * rng.uniform(0.12, 0.2), rng.uniform(0.008, 0.015)
    hr, hm = h * rng.uniform(0.25, 0.38), rng.uniform(0.006, 0.011)
    parts = [
        vcyl(r, h),
        vcyl(r - wall, h, y0=floor, negative=True),
        Part("torus", (hr, hm), _at(x=r + hr * 0.35, y=h * rng.uniform(0.45, 0.55))),
    ]
    return Shape("mug", tuple(parts), _aspect_tags(h / (2 * r + hr), 0.85, 1.1))


def _smooth_profile(rng, n_ctrl, lo, hi, samples=24) -> np.ndarray:
    """A smooth random radius curve over [0, 1] (cosine-interpolated control radii)."""
    ctrl = rng.uniform(lo, hi, n_ctrl)
    s = np.linspace(0, 1, samples) * (n_ctrl - 1)
    i = np.minimum(s.astype(int), n_ctrl - 2)
    f = (1 - np.cos((s - i) * np.pi)) / 2
    return ctrl[i] * (1 - f) + ctrl[i + 1] * f


def vase(rng) -> Shape:
    h = rng.uniform(0.2, 0.5)
    radii = _smooth_profile(rng, int(rng.integers(3, 6)), 0.04, 0.14)
    radii[0] = max(radii[0], 0.05)
    prof = np.stack([radii, np.linspace(0, h, len(radii))], 1)
    return Shape("vase", (vrev(prof),), _aspect_tags(h / (2 * radii.max()), 1.3, 2.0))


def bottle(rng) -> Shape:
    rb, hb = rng.uniform(0.03, 0.05), rng.uniform(0.1, 0.22)
    rn, hn, hs = rng.uniform(0.01, 0.016), rng.uniform(0.04, 0.09), rng.uniform(0.02, 0.06)
    prof = [
        [rb, 0.0],
        [rb, hb],
        [rn, hb + hs],
        [rn, hb + hs + hn],
        [rn * 1.15, hb + hs + hn + 0.004],
        [rn * 1.15, hb + hs + hn + 0.015],
    ]
    total = hb + hs + hn + 0.015
    return Shape("bottle", (vrev(prof),), _aspect_tags(total / (2 * rb), 3.3, 4.5))


def shelf(rng) -> Shape:
    w, h, d, t = rng.uniform(0.5, 1.2), rng.uniform(0.6, 2.0), rng.uniform(0.22, 0.4), rng.uniform(0.02, 0.035)
    n = int(rng.integers(1, 5))
    parts = [box(t, h, d, x=-w / 2 + t / 2, y=h / 2), box(t, h, d, x=w / 2 - t / 2, y=h / 2)]
    for y in np.linspace(t / 2, h - t / 2, n + 2):
        parts.append(box(w - t, t, d, y=y))
    if rng.random() < 0.5:
        parts.append(box(w, h, t * 0.6, y=h / 2, z=-d / 2 + t * 0.3))
    return Shape("shelf", tuple(parts), _aspect_tags(h / w, 1.2, 2.0))


def rocket(rng) -> Shape:
    r, body, nose = rng.uniform(0.08, 0.14), rng.uniform(0.5, 1.1), rng.uniform(0.15, 0.35)
    fin_n, fin_h, fin_w = int(rng.choice([3, 4])), rng.uniform(0.15, 0.3), rng.uniform(0.08, 0.16)
    y0 = rng.uniform(0.03, 0.08)
    nose_prof = np.stack([r * np.cos(np.linspace(0, np.pi / 2, 8)) ** 0.8, body + nose * np.linspace(0, 1, 8)], 1)
    prof = np.vstack([[r * 0.75, 0.0], [r, y0], nose_prof])
    parts = [vrev(prof)]
    for a in np.arange(fin_n) * 2 * np.pi / fin_n:
        rot = rotation_matrix(a, [0, 1, 0])
        c = rot[:3, :3] @ np.array([r + fin_w / 2 - 0.01, 0, 0])
        parts.append(box(fin_w, fin_h, 0.015, x=c[0], y=fin_h / 2 + 0.01, z=c[2], rot=rot))
    return Shape("rocket", tuple(parts), _aspect_tags((body + nose) / (2 * r + 2 * fin_w), 2.6, 3.6))


def car(rng) -> Shape:
    length, width, body_h = rng.uniform(3.6, 4.9), rng.uniform(1.6, 1.95), rng.uniform(0.45, 0.75)
    wheel_r, clearance = rng.uniform(0.3, 0.4), rng.uniform(0.12, 0.3)
    cab_l, cab_h, cab_x = length * rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.7), rng.uniform(-0.35, 0.15)
    body_y = clearance + body_h / 2
    parts = [
        box(length, body_h, width, y=body_y),
        box(cab_l, cab_h + 0.05, width * rng.uniform(0.8, 0.95), x=cab_x, y=clearance + body_h + cab_h / 2 - 0.025),
    ]
    for x in (-length * 0.33, length * 0.33):
        for z in (-width / 2 + 0.12, width / 2 - 0.12):
            parts.append(Part("cylinder", (wheel_r, 0.25), _at(x, wheel_r, z)))
    total_h = clearance + body_h + cab_h
    return Shape("car", tuple(parts), _aspect_tags(total_h / length, 0.3, 0.38))


def airplane(rng) -> Shape:
    fl, fr = rng.uniform(1.0, 1.4), rng.uniform(0.05, 0.08)
    span, chord, wx = rng.uniform(0.8, 1.3), rng.uniform(0.12, 0.25), rng.uniform(-0.1, 0.12)
    tail_span, tail_chord = span * rng.uniform(0.3, 0.45), chord * rng.uniform(0.5, 0.8)
    fin_h = rng.uniform(0.12, 0.25)
    parts = [
        Part("capsule", (fr, fl), _at(rot=_ALONG_X)),
        box(chord, 0.02, span, x=wx, y=-fr * 0.3),
        box(tail_chord, 0.015, tail_span, x=-fl / 2 + tail_chord / 2, y=fr * 0.2),
        box(tail_chord * 1.1, fin_h, 0.015, x=-fl / 2 + tail_chord / 2, y=fr * 0.5 + fin_h / 2),
    ]
    jets = rng.random() < 0.5
    if jets:
        er = fr * rng.uniform(0.45, 0.7)
        for z in (-span * 0.28, span * 0.28):
            parts.append(
                Part("cylinder", (er, chord * 1.3), _at(x=wx + chord * 0.2, y=-fr * 0.3 - er, z=z, rot=_ALONG_X))
            )
    return Shape("airplane", tuple(parts), _aspect_tags(span / fl, 0.85, 1.05))


def tree(rng) -> Shape:
    trunk_h, trunk_r = rng.uniform(0.15, 0.5), rng.uniform(0.03, 0.07)
    pine = rng.random() < 0.5
    parts = [vcyl(trunk_r, trunk_h + 0.05)]
    if pine:
        n, cr, ch = int(rng.integers(2, 5)), rng.uniform(0.25, 0.45), rng.uniform(0.3, 0.5)
        y, top = trunk_h, trunk_h
        for k in range(n):
            rk = cr * (1 - 0.22 * k)
            parts.append(vrev([[rk, 0.0], [rk * 0.05, ch]], y0=y))
            top, y = y + ch, y + ch * 0.5
        width = 2 * cr
    else:
        n, cr = int(rng.integers(1, 4)), rng.uniform(0.22, 0.4)
        top, width = trunk_h, 0.0
        for k in range(n):
            rk = cr * rng.uniform(0.65, 1.0)
            x, z = (rng.uniform(-0.6, 0.6, 2) * cr) if k else (0.0, 0.0)
            yk = trunk_h + rk * 0.8 + (rng.uniform(0.0, 0.5) * cr if k else 0.0)
            parts.append(Part("sphere", (rk,), _at(x, yk, z)))
            top, width = max(top, yk + rk), max(width, 2 * (max(abs(x), abs(z)) + rk))
    tags = ("pine",) if pine else ("round",)
    return Shape("tree", tuple(parts), tags + _aspect_tags(top / width, 1.5, 2.2))


BUILDERS: dict[str, Callable[[np.random.Generator], Shape]] = {
    "chair": chair,
    "table": table,
    "stool": stool,
    "lamp": lamp,
    "mug": mug,
    "vase": vase,
    "bottle": bottle,
    "shelf": shelf,
    "rocket": rocket,
    "car": car,
    "airplane": airplane,
    "tree": tree,
}
CATEGORIES: tuple[str, ...] = tuple(BUILDERS)
TAGS: tuple[str, ...] = ("tall", "short", "round", "square", "arms", "pine")


def shape_seed(category: str, index: int, split: str = "train") -> int:
    """The seed of shape `index` of a category in a split; held-out seeds never collide with training ones."""
    if split not in ("train", "heldout"):
        raise InvalidParameterError(f"split={split!r} is unknown; use 'train' or 'heldout'.")
    return (HELDOUT_SEED0 if split == "heldout" else 0) + index * len(CATEGORIES) + CATEGORIES.index(category)


def make_shape(category: str, seed: int) -> Shape:
    if category not in BUILDERS:
        raise InvalidParameterError(f"Unknown shape category {category!r}; known: {', '.join(CATEGORIES)}.")
    shape = BUILDERS[category](np.random.default_rng(seed))
    return Shape(shape.category, shape.parts, shape.tags, seed)


def sample_cloud(category: str, seed: int, n_points: int = 2048) -> np.ndarray:
    """The normalized (n_points, 3) float32 surface cloud of one procedural shape."""
    return _cloud(make_shape(category, seed), n_points)


def _cloud(shape: Shape, n_points: int) -> np.ndarray:
    return normalize_cloud(shape.sample(n_points, np.random.default_rng(shape.seed + 7919)))


@dataclass
class CloudSet:
    """Clouds of many shapes with their labels: what training and evaluation consume."""

    points: np.ndarray  # (S, N, 3) float32, normalized
    labels: np.ndarray  # (S,) int64 category index into CATEGORIES
    tags: np.ndarray  # (S, len(TAGS)) bool
    seeds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def build_set(
    per_category: int,
    split: str = "train",
    n_points: int = 2048,
    categories: tuple[str, ...] = CATEGORIES,
    start: int = 0,
) -> CloudSet:
    """`per_category` shapes of each category, indices start .. start + per_category of the split."""
    pts, labels, tags, seeds = [], [], [], []
    for cat in categories:
        for i in range(start, start + per_category):
            seed = shape_seed(cat, i, split)
            shape = make_shape(cat, seed)
            pts.append(_cloud(shape, n_points))
            labels.append(CATEGORIES.index(cat))
            tags.append([t in shape.tags for t in TAGS])
            seeds.append(seed)
    return CloudSet(np.stack(pts), np.array(labels, np.int64), np.array(tags, bool), np.array(seeds, np.int64))
