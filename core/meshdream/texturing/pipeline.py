"""`texture_mesh`: the entry point shared by the Python API, the CLI, the server and the Blender add-on."""

from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
import trimesh

from ..errors import InvalidParameterError
from ..geometry import Camera, bake_operator, load_mesh, mesh_info, orbit_cameras, uv_maps
from ..geometry.meshdata import has_mesh_info
from ..geometry.pages import atlas_mesh, material_mesh, mesh_pages
from ..geometry.texture import as_float_image, check_texture_size
from ..presets import with_preset
from ..progress import CancelToken, ProgressCallback
from .common import Settings, Timer
from .materials import check_delight, material_maps, pack_maps, resolve_material_model, split_maps, texture_maps
from .multiscale import refine
from .project import texture_project
from .result import TextureResult
from .sequential import texture_sequential
from .sync import texture_sync
from .views import LIGHTING_NEGATIVE, prepare_views

STRATEGIES = ("sync", "sequential", "project")


def texture_mesh(
    mesh,
    prompt: Union[str, Mapping[str, str]],
    generator=None,
    strategy: str = "sync",
    n_views: Optional[int] = None,
    view_resolution: Optional[int] = None,
    texture_size: Optional[int] = None,
    seed: int = 0,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    cameras: Optional[Sequence[Camera]] = None,
    negative_prompt: str = LIGHTING_NEGATIVE,
    init_image: Optional[np.ndarray] = None,
    strength: float = 0.6,
    directions: bool = True,
    inpaint_generator=None,
    refine_scale: int = 1,
    refine_strength: float = 0.35,
    reference_image: Optional[np.ndarray] = None,
    per_material: Optional[bool] = None,
    uv_set: Optional[int] = None,
    pbr: bool = False,
    material_model=None,
    delight: Optional[bool] = None,
    preset: Optional[str] = None,
) -> TextureResult:
    """Texture `mesh` (a path, or a trimesh; normalized with load_mesh unless it came from there) from `prompt`.

    strategy: "sync" (all views denoised together through one shared texture), "sequential" (view after view,
    keep/refine/generate), or "project" (one camera, e.g. the viewport; optional `init_image` for img2img at
    `strength`). cameras: in the normalized frame (see Camera.transformed); default orbit_cameras(n_views).
    generator: from load_generator(); None loads the built-in model.
    view_resolution, texture_size, steps, guidance: None takes the generator's own (what its model card says suits
        it: the built-in model's training resolution, 512 px for SD 1.5, 1024 for SDXL; see Generator).
    inpaint_generator: fills texels no view saw, in UV space (e.g. an SD inpainting model); None: harmonic fill.
    reference_image: (H, W, 3) picture whose style the texture follows (generators loaded with an IP-Adapter).
    refine_scale: > 1 adds a pass that refines the views at that many times their resolution (img2img over tiles
        of the model's native size, `refine_strength`); the first pass then bakes at texture_size / refine_scale.
    per_material: for a mesh with several materials: True one texture per material, False one shared texture, None
        (default) per material only where the materials' UVs overlap each other. A mesh whose UVs span UDIM tiles
        gets one texture per tile. Either way all pages are textured together (one bake, one set of views), each
        texture_size², returned in `result.textures`. A dict `prompt` {material: prompt} textures each material's
        faces in a run of their own (one diffusion image has one prompt), so its views show that material alone.
    uv_set: for a glTF / GLB path, the UV set to texture (TEXCOORD_n, see load_mesh; None: the first); a mesh
        loaded already has its own. Loading (and unwrapping a mesh without usable UVs) is timed as "load_mesh" and
        "unwrap".
    pbr: also make roughness, metallic and a normal map (`result.maps`, `result.page_maps`; see bake_materials),
        estimated from the finished texture by `material_model` (a MaterialModel, a load_material_model spec, or
        None: the generator family's own, else the built-in one with a warning): read off the texture itself, or
        from views of it baked with the texture's own cameras and weights (timed as "materials"). delight: the
        model's albedo becomes the base colour (None: when the model makes one). Without pbr the result is exactly
        what it was before pbr existed.
    preset: a name in meshdream.presets.PRESETS ("quick": a preview in seconds; "full", the default: 8 views and the
        generator's own) filling n_views, view_resolution, texture_size and steps where they are None.
    """
    # Everything but what a per-material run replaces, for the runs of a dict prompt (keep this line first).
    options = {k: v for k, v in locals().items() if k not in ("mesh", "prompt", "generator", "per_material")}
    t0 = time.perf_counter()
    chosen = with_preset(
        preset, n_views=n_views, view_resolution=view_resolution, texture_size=texture_size, steps=steps
    )
    n_views, view_resolution, texture_size, steps = chosen.values()
    if strategy not in STRATEGIES:
        raise InvalidParameterError(f"Strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}.")
    check_counts(n_views=n_views, view_resolution=view_resolution, texture_size=texture_size, steps=steps)
    prompts = list(prompt.values()) if isinstance(prompt, Mapping) else [prompt]
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise InvalidParameterError("The prompt is empty; describe the texture, e.g. 'weathered red brick'.")
    timer = Timer()
    generator = resolve_generator(generator, timer)
    view_resolution = resolve_view_resolution(generator, view_resolution)
    texture_size = check_texture_size(texture_size or generator.default_texture_size)
    if refine_scale not in (1, 2, 4) or texture_size // refine_scale < 16:
        raise InvalidParameterError(f"refine_scale {refine_scale} must be 1, 2 or 4 (and leave a texture of >= 16).")
    model = None
    if pbr:
        with timer("load_model"):  # before any generation: a broken material model fails fast
            model = resolve_material_model(material_model, generator)
        check_delight(model, delight)
        options["material_model"] = model
    mesh = resolve_mesh(mesh, uv_set, timer, progress, cancel)
    if isinstance(prompt, Mapping):
        return _prompt_per_material(mesh, dict(prompt), generator, per_material, options, timer, t0)
    with timer("views"):
        pages = mesh_pages(mesh, per_material)
        grid = 1 if pages is None else pages.grid
        mesh = mesh if pages is None else atlas_mesh(mesh, pages)  # all pages in one square texture
        chosen = cameras is None  # views MeshDream chose that see nothing are dropped; a caller's are an error
        if chosen:
            cameras = orbit_cameras(1 if strategy == "project" else n_views, resolution=view_resolution, mesh=mesh)
        cameras = list(cameras)
        if strategy == "project" and len(cameras) != 1:
            raise InvalidParameterError(f"The project strategy takes exactly one camera, got {len(cameras)}.")
        views = prepare_views(
            mesh,
            cameras,
            prompt.strip(),
            directions,
            normals=generator.uses_normals,
            require_visible=not chosen,
            device=generator.device,
        )
    settings = Settings(
        prompt=prompt.strip(),
        texture_size=texture_size * grid // refine_scale,
        seed=seed,
        steps=steps or generator.default_steps,
        guidance=generator.default_guidance if guidance is None else guidance,
        negative_prompt=negative_prompt,
        progress=progress,
        cancel=cancel,
        inpaint_generator=inpaint_generator,
        reference_image=reference_tensor(reference_image),
        atlas_grid=grid,
    )
    if strategy == "sync":
        result = texture_sync(mesh, views, generator, settings, timer)
    elif strategy == "sequential":
        result = texture_sequential(mesh, views, generator, settings, timer)
    else:
        result = texture_project(mesh, views, generator, settings, timer, init_image, strength)
    if refine_scale > 1:
        result = refine(mesh, result, generator, settings, timer, scale=refine_scale, strength=refine_strength)
    if model is not None:
        with timer("materials"):
            add_materials(mesh, result, model, views, settings, delight, generator.device)
    if pages is not None:
        with timer("bake"):
            coverage = uv_maps(mesh, result.texture.shape[0]).coverage
            result.textures = pages.split(result.texture, coverage)
            result.texture = pages.pack(result.textures)  # the atlas with each page's gutter padded on its own
            if result.maps:
                result.page_maps = split_maps(pages, result.maps, coverage)
                for name, maps in result.page_maps.items():
                    maps["base_color"] = result.textures[name]
                result.maps = {**pack_maps(pages, result.page_maps), "base_color": result.texture}
    result.timings = timer.timings(time.perf_counter() - t0)
    return result


def add_materials(mesh, result: TextureResult, model, views, s: Settings, delight, device) -> None:
    """The PBR maps of the finished `result`: read off the texture itself, or (a model that reads views) baked with the
    cameras (and, where the size is the final bake's, the very operator) that made its texture; the base colour
    becomes the de-lit albedo when delighting."""
    size = result.texture.shape[0]
    if model.reads_texture:
        maps = texture_maps(mesh, result.texture, model, s.prompt, delight, s.progress, s.cancel)
    else:
        op = s.bake_op if s.bake_op is not None and s.bake_op.size == size else None
        if op is None:  # a refine pass baked at another size
            op = bake_operator(mesh, views.cameras, size, power=s.bake_power, maps=views.maps, device=device)
        maps = material_maps(
            mesh, result.texture, model, views.cameras, views.maps, op, s.prompt, delight, s.progress, s.cancel
        )
    result.texture = maps["base_color"]
    result.maps = maps


def resolve_generator(generator, timer: Timer):
    """The caller's generator, or the built-in model (loading it timed as "load_model")."""
    if generator is not None:
        return generator
    from ..generators import load_generator

    with timer("load_model"):
        return load_generator("builtin")


def check_counts(**counts: Optional[int]) -> None:
    """Each count given (not None) is a whole number >= 1, else an error naming it: n_views=0 or steps=-5 fail
    here, not deep in a sampler."""
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InvalidParameterError(f"{name}={value!r} must be a whole number >= 1.")


def resolve_view_resolution(generator, view_resolution: Optional[int]) -> int:
    """The view resolution asked for, else the generator's own; a multiple of its latent factor."""
    view_resolution = view_resolution or generator.native_resolution
    if view_resolution % generator.latent_factor:
        raise InvalidParameterError(
            f"View resolution {view_resolution} must be a multiple of {generator.latent_factor} for {generator.name}."
        )
    return view_resolution


def resolve_mesh(mesh, uv_set: Optional[int], timer: Timer, progress=None, cancel=None) -> trimesh.Trimesh:
    """A mesh from load_mesh as it is; a path or another trimesh loaded (timed as "load_mesh" and "unwrap")."""
    if not (isinstance(mesh, trimesh.Trimesh) and has_mesh_info(mesh)):
        with timer("load_mesh"):
            mesh = load_mesh(mesh, uv_set=uv_set or 0, progress=progress, cancel=cancel)
        timer.split("load_mesh", "unwrap", mesh_info(mesh).unwrap_seconds)
    elif uv_set is not None and uv_set != mesh_info(mesh).uv_set:
        raise InvalidParameterError(
            f"uv_set={uv_set}, but the mesh was loaded with UV set {mesh_info(mesh).uv_set}; "
            f"pass the file's path, or load it with load_mesh(path, uv_set={uv_set})."
        )
    return mesh


def reference_tensor(reference_image: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    """(1, 3, H, W) float tensor of a reference picture for an IP-Adapter, None without one."""
    if reference_image is None:
        return None
    return torch.from_numpy(as_float_image(reference_image, 3, "reference image")).permute(2, 0, 1)[None]


def _prompt_per_material(mesh, prompts: dict, generator, per_material, options: dict, timer: Timer, t0: float):
    """One run per material, on its faces alone, with its own prompt; the pages are put together as one result."""
    info = mesh_info(mesh)
    names = list(info.materials)
    if per_material is False:
        raise InvalidParameterError("A prompt per material needs per_material=True (or unset); pass one prompt string.")
    if info.udim_tiles:
        raise InvalidParameterError("A prompt per material is not possible on a UDIM layout; pass one prompt string.")
    if len(names) < 2 or set(prompts) != set(names):
        raise InvalidParameterError(
            f"Got prompts for {sorted(prompts)}; the mesh's materials are {names}: give one prompt per material "
            "(or one prompt string for all)."
        )
    pages = mesh_pages(mesh, per_material=True)
    runs = {
        name: texture_mesh(material_mesh(mesh, name), prompts[name], generator, per_material=False, **options)
        for name in pages.names
    }
    timings = timer.timings(0.0)
    for run in runs.values():
        for stage, seconds in run.timings.items():
            timings[stage] = round(timings.get(stage, 0.0) + seconds, 4)
    textures = {name: run.texture for name, run in runs.items()}
    page_maps = {name: run.maps for name, run in runs.items() if run.maps}
    texture = pages.pack(textures)
    return TextureResult(
        texture,
        pages.pack({name: run.weight for name, run in runs.items()}, "weight")[..., 0],
        [view for run in runs.values() for view in run.views],
        {**timings, "total": round(time.perf_counter() - t0, 4)},
        strategy=options["strategy"],
        textures=textures,
        maps={**pack_maps(pages, page_maps), "base_color": texture} if page_maps else {},
        page_maps=page_maps,
    )
