"""The built-in model's prompt vocabulary: material family words and colour words, learned with the model.

Words outside it are reported (a warning and `BuiltinGenerator.unknown_words`), never silently dropped; words
that carry no material meaning for this model (articles, the direction words texture_mesh adds) are skipped.
"""

from __future__ import annotations

import re

from .materials import COLOURS, FAMILIES

SYNONYMS = {
    "wooden": "wood",
    "oak": "wood",
    "timber": "wood",
    "bricks": "brick",
    "tile": "tiles",
    "tiled": "tiles",
    "rock": "stone",
    "stones": "stone",
    "metallic": "metal",
    "steel": "metal",
    "cloth": "fabric",
    "textile": "fabric",
    "lawn": "grass",
    "camo": "camouflage",
    "polka": "dots",
    "dotted": "dots",
    "striped": "stripes",
    "checkered": "checker",
    "checkerboard": "checker",
    "grey": "gray",
    "golden": "gold",
}
IGNORED = {
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "in",
    "on",
    "texture",
    "textured",
    "material",
    "surface",
    "pattern",
    "seamless",
    "tileable",
    "flat",
    "top-down",
    "view",
    "front",
    "side",
    "back",
    "top",
    "bottom",
}
WORDS = ("<null>",) + FAMILIES + tuple(COLOURS)  # id 0 is the empty prompt (classifier-free guidance)
WORD_ID = {w: i for i, w in enumerate(WORDS)}


def parse(prompt: str) -> tuple[list[int], list[str]]:
    """(word ids, unknown words) of a prompt; commas, case and plurals-by-synonym handled."""
    ids, unknown = [], []
    for token in re.findall(r"[a-zA-Z][a-zA-Z\-]*", prompt.lower()):
        word = SYNONYMS.get(token, token)
        if word in WORD_ID:
            ids.append(WORD_ID[word])
        elif word not in IGNORED:
            unknown.append(token)
    return ids, unknown
