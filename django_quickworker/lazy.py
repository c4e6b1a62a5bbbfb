"""Public names loaded on first use, so that a package whose modules need a ready app
registry (they import the models or the channel layer) can be imported before it is ready,
as ``INSTALLED_APPS`` and ``TASKS`` do."""

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``modules`` from
    its module when it is first read."""

    def __getattr__(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
