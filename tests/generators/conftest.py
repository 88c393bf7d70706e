import pytest

from tests.tiny_models import build


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Folder of each tiny pipeline kind, built once per test session."""
    root = tmp_path_factory.mktemp("tiny_models")
    cache = {}

    def get(kind: str, seed: int = 0):
        key = (kind, seed)
        if key not in cache:
            cache[key] = build(root / f"{kind}_{seed}", kind, seed=seed)
        return cache[key]

    return get
