"""`meshdream serve`: one process owns the GPU and keeps models loaded; tools send jobs over HTTP (client.py).

FastAPI and uvicorn are an optional extra; without them this package says how to install them.
"""

from ..errors import MeshDreamError


class ServerExtraMissingError(MeshDreamError, ImportError):
    """FastAPI or uvicorn is not installed."""


try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:
    raise ServerExtraMissingError(
        f"`meshdream serve` needs FastAPI and uvicorn ({exc.name} is missing): pip install 'meshdream[server]'"
    ) from exc

from .app import DEFAULT_PORT, create_app, serve  # noqa: E402

__all__ = ["DEFAULT_PORT", "ServerExtraMissingError", "create_app", "serve"]
