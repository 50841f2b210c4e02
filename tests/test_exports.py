"""Each package's public names are exactly its __all__, and every one of them resolves."""

import importlib

import pytest


@pytest.mark.parametrize("package", ["lpcore", "lptrio", "lprecord"])
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)

    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("package", ["lpcore", "lptrio", "lprecord"])
def test_public_names_are_listed(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        getattr(module, name)

    public = {
        name
        for name in vars(module)
        if not name.startswith("_")
        and name not in {"annotations", "importlib"}
        and not isinstance(getattr(module, name), type(importlib))
    }

    assert public - {"TYPE_CHECKING", "Any"} <= set(module.__all__)
