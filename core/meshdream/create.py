"""`create_asset`: a sentence ("a tall oak chair") to a closed, UV-unwrapped, textured mesh.

The sentence is split between the two models: the shape model takes its category and attribute words ("tall
chair"), the texture model the words it understands ("oak", which the built-in vocabulary reads as wood), so
neither sees the other's words; words neither knows are named in one warning. It sits at the top of the package:
it uses both shapes and texturing.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import trimesh

from .errors import InvalidParameterError, MeshDreamWarning
from .generators.builtin import BuiltinGenerator, vocab
from .geometry import load_mesh, mesh_info
from .progress import CancelToken, ProgressCallback
from .shapes import load_shape_model, parse_prompt, shape_mesh
from .shapes.generate import CATEGORY_WORDS, TAG_WORDS
from .texturing import TextureResult, texture_mesh

# Words that carry no meaning for either model (beside the texture vocabulary's own, e.g. "a", "with").
FILLER = vocab.IGNORED | {"for", "to", "is", "it", "its", "that", "very", "made", "from", "like", "some", "one"}
# The texture of a sentence that names no material ("a chair"): what such things are usually made of.
DEFAULT_MATERIAL = {
    "chair": "wood",
    "table": "wood",
    "stool": "wood",
    "lamp": "metal",
    "mug": "white tiles",
    "vase": "marble",
    "bottle": "green",
    "shelf": "wood",
    "rocket": "white metal",
    "car": "red metal",
    "airplane": "gray metal",
    "tree": "green grass",
}


@dataclass(frozen=True)
class PromptSplit:
    """What each model was given of a sentence: `shape` ("tall chair"), `texture` ("oak"; a sentence naming no
    material gets its shape's usual one, DEFAULT_MATERIAL), and the words neither knows (`unknown`, left out)."""

    shape: str
    texture: str
    unknown: tuple[str, ...] = ()


@dataclass
class CreateResult:
    """A created asset: `mesh` (closed, UV-unwrapped, in load_mesh's normalized frame) and its `texture` (a
    TextureResult, PBR maps with pbr=True); write them with save_textured(result.mesh, result.texture, path).
    timings: seconds by stage (shape, mesh, unwrap, texture)."""

    mesh: trimesh.Trimesh
    texture: TextureResult
    shape_prompt: str
    texture_prompt: str
    unknown_words: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


def _words(prompt: str) -> list[str]:
    return re.findall(r"[a-z]+", prompt.lower())


def _category(word: str) -> Optional[str]:
    """The shape category a word names (plurals too: "chairs"), or None."""
    return CATEGORY_WORDS.get(word) or (CATEGORY_WORDS.get(word[:-1]) if word.endswith("s") else None)


def split_prompt(prompt: str, open_vocabulary: bool = False, texture_vocabulary: bool = True) -> PromptSplit:
    """Split a sentence between the shape model and the texture model.

    open_vocabulary: the shape model reads any text (the sentence less its texture words goes to it); otherwise
        its first category word and that category's attribute words do, and a sentence with no category raises
        InvalidParameterError naming the categories. A material word that is also a category ("pine") is the
        material when another category is named ("a pine table").
    texture_vocabulary: the texture model is the built-in one, which knows a fixed vocabulary (family and colour
        words and their synonyms); other words are unknown. False: every other word is the texture's.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameterError("prompt must be a sentence naming a shape, e.g. 'a tall oak chair'.")
    words = _words(prompt)
    if open_vocabulary:
        texture = [w for w in words if vocab.knows(w) and w not in FILLER]
        shape = " ".join(w for w in re.findall(r"[\w'-]+", prompt) if w.lower() not in texture)
        return PromptSplit(shape, " ".join(texture) or "gray")
    named = [w for w in words if _category(w)]
    if len({_category(w) for w in named}) > 1:
        named = [w for w in named if not vocab.knows(w)] or named
    if not named:
        parse_prompt(prompt)  # raises: no category, naming those the model makes
    category, tags = parse_prompt(" ".join(named[:1] + [w for w in words if w in TAG_WORDS]))
    used = {w for w in words if _category(w) == category or TAG_WORDS.get(w) in tags}
    rest = [w for w in words if w not in used and w not in FILLER]
    shape_words = [w for w in rest if _category(w) or w in TAG_WORDS]  # another shape or an unused attribute
    known = [w for w in rest if vocab.knows(w) or (not texture_vocabulary and w not in shape_words)]
    unknown = tuple(dict.fromkeys(w for w in rest if w not in known))
    return PromptSplit(" ".join((*tags, category)), " ".join(known) or DEFAULT_MATERIAL[category], unknown)


def create_asset(
    prompt: str,
    shape_model: Any = None,
    generator=None,
    seed: int = 0,
    n_points: int = 2048,
    shape_steps: Optional[int] = None,
    shape_guidance: Optional[float] = None,
    face_budget: int = 20000,
    n_views: int = 8,
    view_resolution: Optional[int] = None,
    texture_size: Optional[int] = None,
    steps: Optional[int] = None,
    guidance: Optional[float] = None,
    pbr: bool = False,
    material_model=None,
    delight: Optional[bool] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> CreateResult:
    """A textured, closed mesh from a sentence ("a tall oak chair"); see `split_prompt` for what each model gets
    (reported as result.shape_prompt / texture_prompt; words neither knows in one MeshDreamWarning).

    shape_model: None or "builtin" (the shipped point-cloud model: generate_shape, then points_to_mesh with
        `face_budget`, unwrapped), a load_shape_model spec, or a loaded model; one with `open_vocabulary` set makes
        the mesh itself from the sentence's shape part (`.mesh(text, seed, steps, guidance, progress, cancel)`).
    generator: the texture model (load_generator; None: the built-in one). n_views, view_resolution, texture_size,
        steps, guidance, pbr, material_model, delight: texture_mesh's (strategy "sync"); shape_steps,
        shape_guidance, n_points: the shape model's. progress / cancel run through both stages.
    """
    timings: dict[str, float] = {}
    model = _shape_model(shape_model)
    open_vocabulary = bool(getattr(model, "open_vocabulary", False))
    split = split_prompt(prompt, open_vocabulary, generator is None or isinstance(generator, BuiltinGenerator))
    if split.unknown:
        warnings.warn(
            f"Neither the shape model nor the texture model knows {', '.join(map(repr, split.unknown))}; left out. "
            f"Shape: {split.shape!r}, texture: {split.texture!r} (texture words: {', '.join(vocab.WORDS[1:])}).",
            MeshDreamWarning,
            stacklevel=2,
        )
    shape = shape_mesh(
        split.shape,
        model,
        seed,
        shape_steps,
        shape_guidance,
        progress,
        cancel,
        n_points=n_points,
        face_budget=face_budget,
        timings=timings,
    )
    mesh = load_mesh(shape, progress=progress, cancel=cancel)
    timings["unwrap"] = timings.get("unwrap", 0.0) + mesh_info(mesh).unwrap_seconds
    t = time.perf_counter()
    texture = texture_mesh(
        mesh,
        split.texture,
        generator,
        n_views=n_views,
        view_resolution=view_resolution,
        texture_size=texture_size,
        seed=seed,
        steps=steps,
        guidance=guidance,
        pbr=pbr,
        material_model=material_model,
        delight=delight,
        progress=progress,
        cancel=cancel,
    )
    timings["texture"] = time.perf_counter() - t
    timings = {k: round(v, 4) for k, v in timings.items()}
    return CreateResult(mesh, texture, split.shape, split.texture, split.unknown, timings)


def _shape_model(spec: Any):
    """The loaded shape model: the shipped one for None / "builtin", load_shape_model's for a spec."""
    if spec is None or spec == "builtin":
        return load_shape_model()
    model = load_shape_model(spec) if isinstance(spec, str) else spec
    if not getattr(model, "open_vocabulary", False) and model is not load_shape_model():
        raise InvalidParameterError(
            "shape_model: create_asset takes the built-in shape model ('builtin') or an open-vocabulary one "
            "(e.g. 'openai/shap-e')."
        )
    return model


__all__ = ["CreateResult", "PromptSplit", "create_asset", "split_prompt"]
