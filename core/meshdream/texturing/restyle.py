"""Restyle an existing texture: its renders, partly noised, are denoised together (sync) under a new prompt.

The current texture is rendered into orbit views (on white, anti-aliased with samples at twice the resolution as
the built-in model's training renders are: a texture finer than the view would otherwise alias into noise that the
model takes for pattern), each view starts from its render noised to `strength` (img2img), the views denoise
through the synchronized loop so they agree, and the result is baked back and seam-inpainted. Views of a few
hundred pixels cannot carry a large texture's finer detail, so that detail (the texture less the re-bake of its
own renders) is added back, scaled as the start noise scales the signal: strength 0 returns the texture itself
where any view sees it, strength 1 a new texture.

Plain img2img keeps the palette: the start step's noise hides a pixel's own value, but a view's mean colour is
averaged over many pixels, where the noise cancels, so below a strength of about 0.7 the model repaints the pattern
in the old colours (blue "wood"). The palette is therefore re-drawn as much as each pixel is: before noising, the
views' mean Lab colour moves toward the model's own expectation for the prompt (one denoising evaluation from pure
noise on the same views) by 1 - alpha_bar of the start step, the share of a pixel's variance the noise replaces
(the posterior-mean weight of a prior centred on the prompt's palette). Luminance detail, the structure, is kept.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..generators import GenerationRequest, sample
from ..generators.sampling import timesteps_for
from ..geometry import bake, orbit_cameras, render, render_texture, uv_maps
from ..geometry.pages import mesh_pages
from ..geometry.texture import as_float_image, check_texture_size
from ..geometry.uvmaps import require_uvs
from ..presets import with_preset
from ..progress import CancelToken, ProgressCallback
from .common import Settings, Timer
from .materials import check_delight, resolve_material_model
from .pipeline import (
    add_materials,
    check_counts,
    reference_tensor,
    resolve_generator,
    resolve_mesh,
    resolve_view_resolution,
)
from .result import TextureResult
from .sync import texture_sync
from .views import prepare_views


def restyle_texture(
    mesh,
    texture: np.ndarray,
    prompt: str,
    strength: float = 0.5,
    reference_image: Optional[np.ndarray] = None,
    generator=None,
    n_views: Optional[int] = None,
    view_resolution: Optional[int] = None,
    texture_size: Optional[int] = None,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    seed: int = 0,
    preset: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    pbr: bool = False,
    material_model=None,
    delight: Optional[bool] = None,
) -> TextureResult:
    """Restyle `texture` ((S, S, 3), S a power of two; float in [0, 1] or uint8) of `mesh` toward `prompt`.

    strength: in [0, 1], how much of the noise schedule is re-run: 0 keeps the texture (up to bake error), 1
        starts from pure noise (a new texture on the same UVs).
    reference_image: (H, W, 3) picture whose style the result follows: passed to a generator loaded with an
        IP-Adapter; otherwise (e.g. the built-in model) each UV chart's colour mean / std is matched to it in Lab.
    n_views, view_resolution, steps, guidance: None takes texture_mesh's defaults (8 views, the generator's own).
    texture_size: the result's size (a power of two); None: the texture's own, or with a preset the preset's (the
        generator's own for "full"). Another size resamples the texture first (bilinear), so restyling a "quick"
        preview with preset="full" refines it to the full setting from where it is, rather than starting over.
    preset: a name in meshdream.presets.PRESETS filling n_views, view_resolution, texture_size and steps left None.
    pbr, material_model, delight: PBR maps of the restyled texture, as in texture_mesh (`result.maps`).
    """
    t0 = time.perf_counter()
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise InvalidParameterError(
            f"Strength {strength!r} must be a number in [0, 1]: 0 keeps the texture, 1 replaces it entirely."
        )
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameterError("The prompt is empty; describe the new style, e.g. 'weathered red brick'.")
    chosen = with_preset(
        preset, n_views=n_views, view_resolution=view_resolution, texture_size=texture_size, steps=steps
    )
    n_views, view_resolution, texture_size, steps = chosen.values()
    check_counts(n_views=n_views, view_resolution=view_resolution, steps=steps)
    require_uvs(mesh)
    source = _check_texture(texture)
    timer = Timer()
    generator = resolve_generator(generator, timer)
    full = generator.default_texture_size if preset is not None else source.shape[0]
    size = check_texture_size(texture_size or full)
    source = resample(source, size)
    view_resolution = resolve_view_resolution(generator, view_resolution)
    model = None
    if pbr:
        with timer("load_model"):
            model = resolve_material_model(material_model, generator)
        check_delight(model, delight)
    mesh = resolve_mesh(mesh, None, timer, progress, cancel)
    if mesh_pages(mesh) is not None:
        raise InvalidParameterError(
            "This mesh has several texture pages (materials with overlapping UVs or UDIM tiles); restyle takes one "
            "texture: restyle each material's mesh on its own."
        )
    ip_adapter = getattr(getattr(generator, "parts", None), "image_encoder", None) is not None
    reference = None if reference_image is None else as_float_image(reference_image, 3, "reference image")
    with timer("views"):
        cameras = orbit_cameras(n_views, resolution=view_resolution, mesh=mesh)
        views = prepare_views(mesh, cameras, prompt.strip(), normals=generator.uses_normals, require_visible=False)
        starts = antialiased_renders(mesh, source, views.cameras, views.maps)
    settings = Settings(
        prompt=prompt.strip(),
        texture_size=size,
        seed=seed,
        steps=steps or generator.default_steps,
        guidance=generator.default_guidance if guidance is None else guidance,
        progress=progress,
        cancel=cancel,
        reference_image=reference_tensor(reference) if ip_adapter else None,
        strength=float(strength),
    )
    share = redrawn_share(generator, settings.steps, strength) if strength > 0 else 0.0
    init = starts
    if share > 0:
        with timer("denoise"):
            palette = _expected_views(generator, views, settings)
        init = shift_palette(starts, np.stack([m.mask for m in views.maps]), palette, share)
    settings.init_images = torch.from_numpy(init).permute(0, 3, 1, 2)
    result = texture_sync(mesh, views, generator, settings, timer)
    with timer("bake"):
        # The detail the views cannot carry (the texture less its own re-bake), kept as the start noise keeps the
        # signal (sqrt(alpha_bar)): all of it at strength 0, none at 1.
        rebaked = bake(
            mesh, list(zip(views.cameras, starts)), size, settings.bake_power, maps=views.maps, device=generator.device
        )
        seen = rebaked.seen
        detail = np.sqrt(1.0 - share) * (source[seen] - rebaked.texture[seen])
        result.texture[seen] = np.clip(result.texture[seen] + detail, 0.0, 1.0)
    if reference is not None and not ip_adapter:
        with timer("transfer"):
            result.texture = match_chart_colours(result.texture, reference, _texel_charts(mesh, size))
    if model is not None:
        with timer("materials"):
            add_materials(mesh, result, model, views, settings, delight, generator.device)
    result.strategy = "restyle"
    result.timings = timer.timings(time.perf_counter() - t0)
    return result


def resample(texture: np.ndarray, size: int) -> np.ndarray:
    """`texture` (S, S, 3) at `size` x `size` (bilinear, anti-aliased when shrinking); as it is at its own size."""
    if texture.shape[0] == size:
        return texture
    t = torch.from_numpy(np.ascontiguousarray(texture)).permute(2, 0, 1)[None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy()


def antialiased_renders(mesh, texture: np.ndarray, cameras, maps) -> np.ndarray:
    """(B, H, W, 3) renders of `texture` on white; each pixel on the mesh (`maps`) is the mean of its samples that
    hit it, its centre and 2 x 2 at twice the resolution: anti-aliased, without the background bleeding into
    silhouette pixels (the bake would carry it into the texture)."""
    out = []
    for camera, m in zip(cameras, maps):
        h, w = m.mask.shape
        fine = camera.resized(2)
        fine_maps = render(mesh, fine)
        total = render_texture(mesh, texture, camera, 0.0, m)
        total += render_texture(mesh, texture, fine, 0.0, fine_maps).reshape(h, 2, w, 2, 3).sum((1, 3))
        count = m.mask + fine_maps.mask.reshape(h, 2, w, 2).sum((1, 3))
        out.append(np.where(m.mask[..., None], total / np.maximum(count, 1)[..., None], 1.0).astype(np.float32))
    return np.stack(out)


def _expected_views(generator, views, s: Settings) -> np.ndarray:
    """(B, H, W, 3) the model's expectation of the views under the prompt: its clean prediction from pure noise
    (one step), which carries the prompt's palette on this geometry and little pattern."""
    request = GenerationRequest(
        prompts=views.prompts,
        negative_prompt=s.negative_prompt,
        depth=views.depth,
        normal=views.normal,
        steps=1,
        guidance=s.guidance,
        seed=s.seed,
        reference_image=s.reference_image,
    )
    return sample(generator, request, cancel=s.cancel).permute(0, 2, 3, 1).numpy()


def redrawn_share(generator, steps: int, strength: float) -> float:
    """1 - alpha_bar at the step img2img starts from (as `sample` picks it): the share of a pixel's variance that
    the start noise replaces: near 0 at low strength (0.21 at 0.3 for the built-in model's 20 steps), 1 at 1."""
    start = timesteps_for(generator.scheduler, steps, strength)[0]
    return float(1.0 - generator.alpha_bar(start.to(generator.device)).cpu())


def shift_palette(starts: np.ndarray, masks: np.ndarray, target: np.ndarray, share: float) -> np.ndarray:
    """Move the mean Lab colour of the object pixels (`masks`) of views `starts` toward that of `target` by
    `share`; every pixel shifts by the same Lab offset, so luminance edges and chroma variation stay."""
    if share <= 0 or not masks.any():
        return starts
    lab = rgb_to_lab(starts[masks])
    offset = share * (rgb_to_lab(target[masks]).mean(0) - lab.mean(0))
    out = starts.copy()
    out[masks] = lab_to_rgb(lab + offset)
    return out


def _check_texture(texture) -> np.ndarray:
    """The texture as (S, S, 3) float32 (a copy where converted; never written to)."""
    a = np.asarray(texture)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] != a.shape[1] or a.shape[0] < 1 or a.shape[0] & (a.shape[0] - 1):
        raise InvalidParameterError(
            f"The texture must be a square RGB image of a power-of-two size, (S, S, 3) such as (1024, 1024, 3); "
            f"got shape {a.shape}. Drop an alpha channel with texture[..., :3] or resize it."
        )
    return as_float_image(a, 3, "texture")


def _texel_charts(mesh, size: int) -> np.ndarray:
    """(S, S) UV chart of every texel; gutter texels take the chart of the covered texel they are padded from,
    so the colour transfer moves the padding with its chart (no stale colours bleed in through mip-maps)."""
    maps = uv_maps(mesh, size)
    chart = maps.chart.ravel().copy()
    texels, source, _ = maps.gutter
    chart[texels] = chart[source]
    return chart.reshape(size, size)


def match_chart_colours(texture: np.ndarray, reference: np.ndarray, chart: np.ndarray) -> np.ndarray:
    """Per UV chart, shift and scale the Lab colours so their mean / std are the reference picture's (Reinhard
    transfer per chart: each part of the layout takes the reference's palette while keeping its own pattern)."""
    lab = rgb_to_lab(texture).reshape(-1, 3)
    ref = rgb_to_lab(reference).reshape(-1, 3)
    ids = chart.ravel()
    on = ids >= 0
    if not on.any():
        return texture
    ids_on = ids[on]
    count = np.bincount(ids_on).astype(np.float64)[:, None]
    x = lab[on].astype(np.float64)
    sums = np.stack([np.bincount(ids_on, x[:, c], minlength=len(count)) for c in range(3)], 1)
    squares = np.stack([np.bincount(ids_on, x[:, c] ** 2, minlength=len(count)) for c in range(3)], 1)
    mean = sums / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
    # A flat chart (std near 0) is moved to the reference's mean, not blown up by a huge gain.
    gain = ref.std(0) / np.maximum(std, 1.0)
    out = np.array(texture, np.float32).reshape(-1, 3)  # a copy; texels of no chart stay exactly as they were
    out[on] = lab_to_rgb((x - mean[ids_on]) * gain[ids_on] + ref.mean(0))
    return out.reshape(texture.shape)


_RGB_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)  # D65


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> CIE Lab (D65)."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_XYZ.T / _WHITE
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) (..., 3) -> sRGB clipped to [0, 1]."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    d = 6 / 29
    xyz = np.where(f > d, f**3, 3 * d * d * (f - 4 / 29)) * _WHITE
    linear = np.clip(xyz @ np.linalg.inv(_RGB_XYZ).T, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(srgb, 0.0, 1.0)
