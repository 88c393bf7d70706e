"""Rasterizing views on a torch device: the ray cast's face, barycentrics and depth, computed where the model runs.

On a GPU the Embree cast of the views (host threads, ~0.2 s for 8 views at 512²) was most of synchronized
texturing's geometry time; rasterized on the GPU the same views take milliseconds. Each face is expanded into the
pixel centres of its screen bounding box, the centres inside it (edge functions) keep a (depth, face) key, and one
scatter-min per pixel is the z-buffer. Both sides of a face are hit, as with the ray cast; depth and barycentrics
are perspective-correct, so they equal the ray's hit up to float32 rounding.
"""

from __future__ import annotations

from typing import Optional

import torch

from .camera import Camera

PAIRS_PER_CHUNK = 1 << 22  # (face, pixel) candidates per pass: ~200 MB of temporaries
EMPTY = torch.iinfo(torch.int64).max


def rasterize(triangles: torch.Tensor, camera: Camera) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(face (H, W) int32, -1 on the background; bary (H, W, 3) float32; depth (H, W) float32, NaN on the
    background) of world-space `triangles` (F, 3, 3) float32 on any device, as `camera` sees them.

    None when a face crosses the camera plane (a camera inside the mesh): a rasterizer would have to clip it, the
    ray cast needs nothing, so the caller casts rays for that view instead.
    """
    dev = triangles.device
    rot = torch.as_tensor(camera.rotation, dtype=torch.float32, device=dev)
    shift = torch.as_tensor(camera.world_to_camera[:3, 3], dtype=torch.float32, device=dev)
    cam = triangles @ rot.T + shift  # (F, 3, 3) camera space, looking down -z
    depth = -cam[..., 2]
    front = (depth > 0).all(1)
    if bool((~front & (depth > 0).any(1)).any()):
        return None
    screen = _screen(cam, depth, camera)
    a, b, c = screen.unbind(1)
    drawn = front & (_cross(b - a, c - a).abs() > 1e-12)  # a face seen edge-on covers no pixel centre
    h, w = camera.height, camera.width
    lo, hi = screen.amin(1), screen.amax(1)  # (F, 2) bounding box in pixel-centre coordinates
    x0, y0 = lo.ceil().clamp(min=0).long().unbind(1)
    x1 = hi[:, 0].floor().clamp(max=w - 1).long()
    y1 = hi[:, 1].floor().clamp(max=h - 1).long()
    cols, rows = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    count = torch.where(drawn, cols * rows, 0)
    faces = torch.nonzero(count).squeeze(1)
    count = count[faces]
    ends = torch.cumsum(count, 0)
    total = int(ends[-1]) if len(ends) else 0
    # Chunk boundaries: the faces whose candidates end in the same PAIRS_PER_CHUNK window go together.
    windows = torch.arange(1, total // PAIRS_PER_CHUNK + 1, device=dev) * PAIRS_PER_CHUNK
    splits = torch.searchsorted(ends, windows)
    zbuf = torch.full((h * w,), EMPTY, dtype=torch.int64, device=dev)
    splits = splits.cpu()
    for chunk, chunk_count in zip(torch.tensor_split(faces, splits), torch.tensor_split(count, splits)):
        if len(chunk):
            _splat(zbuf, chunk, screen, depth, x0, y0, cols, chunk_count, w)
    hit = zbuf != EMPTY
    face = torch.where(hit, zbuf & 0xFFFFFFFF, -1).to(torch.int32)
    pixels = torch.nonzero(hit).squeeze(1)
    f = face[pixels].long()
    px = torch.stack([pixels % w, pixels // w], 1).to(torch.float32)
    bary, z = _perspective(_edge_weights(screen[f], px), depth[f])
    bary_img = torch.zeros((h * w, 3), dtype=torch.float32, device=dev)
    depth_img = torch.full((h * w,), float("nan"), dtype=torch.float32, device=dev)
    bary_img[pixels] = bary
    depth_img[pixels] = z
    return face.view(h, w), bary_img.view(h, w, 3), depth_img.view(h, w)


def _screen(cam: torch.Tensor, depth: torch.Tensor, camera: Camera) -> torch.Tensor:
    """(F, 3, 2) corner positions in pixel-centre coordinates: (column, row), pixel (i, j) centred at (j, i)."""
    safe = torch.where(depth > 0, depth, 1.0)
    x = camera.fx * cam[..., 0] / safe + (camera.cx - 0.5)
    y = (camera.cy - 0.5) - camera.fy * cam[..., 1] / safe
    return torch.stack([x, y], -1)


def _edge_weights(tri: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(N, 3) screen-space barycentrics of points `p` (N, 2) in triangles `tri` (N, 3, 2); either winding."""
    a, b, c = tri.unbind(1)
    area = _cross(b - a, c - a)
    weights = torch.stack([_cross(c - b, p - b), _cross(a - c, p - c), _cross(b - a, p - a)], 1)
    return weights / area[:, None]


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


def _perspective(screen_bary: torch.Tensor, corner_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface barycentrics and depth from screen barycentrics: 1/depth is linear in screen space."""
    q = screen_bary / corner_depth
    inv = q.sum(1)
    return q / inv[:, None], 1.0 / inv


def _splat(zbuf, faces, screen, depth, x0, y0, cols, count, width) -> None:
    """Depth-test the pixel centres inside `faces` into `zbuf`: per pixel, the least (depth bits << 32 | face)."""
    n = int(count.sum())
    dev = zbuf.device
    owner = torch.repeat_interleave(torch.arange(len(faces), device=dev), count, output_size=n)
    first = torch.cumsum(count, 0) - count
    k = torch.arange(n, device=dev) - first[owner]
    f = faces[owner]
    span = cols[f]
    px, py = x0[f] + k % span, y0[f] + k // span
    weights = _edge_weights(screen[f], torch.stack([px, py], 1).to(torch.float32))
    inside = (weights >= -1e-6).all(1)
    _, z = _perspective(weights[inside], depth[f[inside]])
    # Positive float32 bit patterns order like the floats, so one int64 min finds the nearest face.
    key = (z.view(torch.int32).to(torch.int64) << 32) | f[inside]
    zbuf.scatter_reduce_(0, (py * width + px)[inside], key, "amin")
