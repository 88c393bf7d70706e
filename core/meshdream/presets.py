"""Named job settings for the built-in model, read by texture_mesh / restyle_texture (`preset=`), and so by the
command line (`--preset`), the server, batch jobs and the Blender add-on's Quick and Refine buttons alike.

"quick" is an interactive preview: few, small views, few steps and a small texture, a few seconds on 2 CPU cores
(`python build.py bench fast`). "full" is the model's own setting (its card's resolution, texture size and steps):
Refine restyles a quick preview with it, so the preview's layout carries over instead of starting again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

from .errors import InvalidParameterError


@dataclass(frozen=True)
class Preset:
    """Settings a preset fills where the caller left them unset; None: the generator's own (see Generator)."""

    n_views: int = 8
    view_resolution: Optional[int] = None
    texture_size: Optional[int] = None
    steps: Optional[int] = None


PRESET_SIZES = tuple(f.name for f in fields(Preset))  # the settings a preset fills

PRESETS: dict[str, Preset] = {
    "quick": Preset(n_views=4, view_resolution=96, texture_size=256, steps=4),
    "full": Preset(),
}


def preset(name: str) -> Preset:
    """The preset called `name`, or InvalidParameterError naming those there are."""
    if not isinstance(name, str) or name not in PRESETS:
        raise InvalidParameterError(f"Preset {name!r} is unknown; use one of {', '.join(PRESETS)}.")
    return PRESETS[name]


def with_preset(name: Optional[str], **given: Optional[int]) -> dict:
    """`given` (some of n_views, view_resolution, texture_size, steps) with the preset's values where they are None
    (no preset: "full", the defaults). What the caller sets always wins."""
    values = asdict(preset("full" if name is None else name))
    return {k: values[k] if v is None else v for k, v in given.items()}
