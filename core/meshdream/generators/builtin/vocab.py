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
    # Materials a sentence names, as the nearest family (and colour where the material has one).
    "pine": "wood",
    "walnut": "wood brown",
    "maple": "wood beige",
    "birch": "wood beige",
    "mahogany": "wood red",
    "teak": "wood brown",
    "ebony": "wood black",
    "bamboo": "wood yellow",
    "granite": "stone gray",
    "slate": "stone gray",
    "concrete": "stone gray",
    "cobblestone": "stone",
    "sandstone": "stone beige",
    "iron": "metal gray",
    "chrome": "metal gray",
    "silver": "metal gray",
    "aluminium": "metal gray",
    "aluminum": "metal gray",
    "gold": "metal gold",
    "brass": "metal gold",
    "bronze": "metal orange",
    "copper": "metal orange",
    "rusty": "metal orange",
    "velvet": "fabric",
    "leather": "fabric brown",
    "denim": "fabric blue",
    "wool": "fabric",
    "woolen": "fabric",
    "cotton": "fabric white",
    "linen": "fabric beige",
    "silk": "fabric",
    "ceramic": "tiles",
    "porcelain": "tiles white",
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
    """(word ids, unknown words) of a prompt; commas, case and plurals-by-synonym handled; a synonym may stand for
    a family and a colour ("walnut": wood, brown), whose family gives way to one the prompt names ("gold tiles")."""
    ids, implied, named, unknown = [], set(), set(), []
    for token in re.findall(r"[a-zA-Z][a-zA-Z\-]*", prompt.lower()):
        words = SYNONYMS.get(token, token).split()
        if all(w in WORD_ID for w in words):
            families = {WORD_ID[w] for w in words if w in FAMILIES}
            # a material with a colour ("gold", "walnut") only implies its family; a family word names one
            (implied if len(words) > 1 else named).update(families)
            ids += [WORD_ID[w] for w in words]
        elif token not in IGNORED:
            unknown.append(token)
    if named:  # "gold tiles": tiles, in gold
        ids = [i for i in ids if i in named or i not in implied]
    return ids, unknown


def knows(word: str) -> bool:
    """Whether the vocabulary gives `word` (one lower-case word) a meaning."""
    return all(w in WORD_ID for w in SYNONYMS.get(word, word).split())
