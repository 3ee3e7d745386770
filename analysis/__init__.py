"""The repository's short name for :mod:`loadgrade.analysis`: ``python -m analysis …`` and ``from analysis import …``
from the repository root keep working, while an installed loadgrade claims no top-level ``analysis``.

``analysis.<module>`` is the very module object ``loadgrade.analysis.<module>`` (no second copy, so classes and
isinstance checks agree), loaded on first use like the names of the package itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

import loadgrade.analysis as _real

__all__ = list(_real.__all__)
__doc__ = _real.__doc__


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``analysis.X`` to the already-importable ``loadgrade.analysis.X``."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(__name__ + ".") or fullname == __name__ + ".__main__":
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module("loadgrade." + spec.name)

    def exec_module(self, module: Any) -> None:
        return None


sys.meta_path.insert(0, _Alias())


def __getattr__(name: str) -> Any:
    return getattr(_real, name)


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
