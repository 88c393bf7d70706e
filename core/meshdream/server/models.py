"""The models a server offers (GET /v1/models), and the one gate every model a job names goes through.

A job names models by what the server lists: "builtin", a Hugging Face id in the local cache, or an entry of
`serve --models-dir` (a diffusers folder, a .safetensors / .pth file). Anything else is refused with the same
words whether or not such a path exists on the server, so a client learns nothing about the server's disk.
`serve --allow-paths` (a private worker, e.g. the one `client.ensure_server` starts for its own user) also takes
paths on the server's machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from ..errors import InvalidParameterError

BUILTIN_UPSCALERS = ("builtin", "lanczos")


@dataclass(frozen=True)
class ModelCatalog:
    models_dir: Optional[Path] = None
    allow_paths: bool = False

    def folder_models(self) -> list[dict]:
        """The models folder's entries (not recursive): diffusers folders and model files, by name."""
        if self.models_dir is None or not self.models_dir.is_dir():
            return []
        from ..generators.upscalers import MODEL_SUFFIXES

        out = []
        for entry in sorted(self.models_dir.iterdir()):
            if entry.is_dir() or entry.suffix.lower() in MODEL_SUFFIXES:
                kind = "folder" if entry.is_dir() else "file"
                out.append({"id": entry.name, "kind": kind, "bytes": entry.stat().st_size if kind == "file" else None})
        return out

    def texture_models(self) -> list[dict]:
        from ..generators import list_cached_models

        return [{"id": "builtin", "kind": "builtin", "bytes": None}, *list_cached_models(), *self.folder_models()]

    def material_models(self) -> list[dict]:
        """What settings.material_model may name: the built-in one, cached Marigold pipelines, the models folder."""
        from ..generators import list_cached_models

        cached = [m for m in list_cached_models() if str(m["kind"]).startswith("Marigold")]
        return [{"id": "builtin", "kind": "builtin", "bytes": None}, *cached, *self.folder_models()]

    def shape_models(self) -> list[dict]:
        """What settings.shape_model may name: the built-in one, cached Shap-E pipelines, the models folder."""
        from ..generators import list_cached_models

        cached = [m for m in list_cached_models() if str(m["kind"]).startswith("ShapE")]
        return [{"id": "builtin", "kind": "builtin", "bytes": None}, *cached, *self.folder_models()]

    def upscalers(self) -> list[dict]:
        return [{"id": name, "kind": "builtin", "bytes": None} for name in BUILTIN_UPSCALERS] + self.folder_models()

    def resolve(self, name: str, where: str) -> str:
        """What load_generator gets for a model named `name`: the name itself, or a models-folder entry's path."""
        return name if name == "builtin" else self._lookup(name, where, cache=True)

    def resolve_option(self, value: Union[str, Sequence[str], None], where: str):
        """A load_generator option that names models (controlnet, lora, ...): each a listed one."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, (list, tuple)):
            return tuple(self.resolve_option(v, where) for v in value)
        return self._lookup(value, where, cache=True)

    def resolve_material_model(self, name, where: str) -> str:
        """What load_material_model gets for a model named `name` (a spec string): one this server lists."""
        if not isinstance(name, str):
            raise InvalidParameterError(f"{where}: name a material model as a string, e.g. 'builtin'.")
        return name if name == "builtin" else self._lookup(name, where, cache=True)

    def resolve_shape_model(self, name, where: str) -> str:
        """What load_shape_model gets for a model named `name` (a spec string): one this server lists."""
        if not isinstance(name, str):
            raise InvalidParameterError(f"{where}: name a shape model as a string, e.g. 'builtin' or 'openai/shap-e'.")
        return name if name == "builtin" else self._lookup(name, where, cache=True)

    def resolve_upscaler(self, name: str, where: str) -> str:
        if isinstance(name, str) and name.lower() in BUILTIN_UPSCALERS:
            return name
        return self._lookup(name, where, cache=False)

    def _lookup(self, name, where: str, cache: bool) -> str:
        """A models-folder entry's path, a cached Hugging Face id as it is (`cache`), a path where allowed."""
        if isinstance(name, str):
            if any(entry["id"] == name for entry in self.folder_models()):
                return str(self.models_dir / name)
            if cache and not self.allow_paths:
                from ..generators import list_cached_models

                if any(entry["id"] == name for entry in list_cached_models()):
                    return name
            if self.allow_paths:
                return name  # load_generator reads a cached id first, then a path
        raise InvalidParameterError(
            f"{where}: {str(name)!r} is not a model this server offers; GET /v1/models lists those it does."
        )
