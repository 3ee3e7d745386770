"""``python``: the escape hatch for an endpoint no preset describes: your own pair of Python functions.

::

    protocol:
      kind: python
      build: my_endpoint:build_request      # (sample) -> bytes, str, or a JSON-able value
      extract: my_endpoint:find_prediction  # (decoded JSON reply) -> prediction

``build`` receives a :class:`loadgrade.dataset.Sample` (``sample_id``, ``input``, ``fields``: the whole row) and
returns the request body: bytes as they are, text as UTF-8, anything else as JSON. It runs once per sample and
process (bodies are cached), so it may be slow. ``extract`` receives the reply decoded from JSON and returns the
prediction; it raises :class:`loadgrade.protocols.ExtractionError` (or any exception, which is turned into one) when
the reply holds none. Both are found when the scenario is loaded, first on the Python path and then in the
scenario file's folder, so a ``my_endpoint.py`` next to the scenario works.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, ProtocolBase, dumps

_FORMAT = "'package.module:function'"


def _import_module(name: str, base_dir: Path | None) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        if exc.name != top or base_dir is None or not ((base_dir / f"{top}.py").is_file() or (base_dir / top).is_dir()):
            where = f" (looked on the Python path and in {base_dir})" if base_dir is not None else ""
            raise ValueError(f"cannot import module {name!r}: {exc}{where}") from None
    sys.path.insert(0, str(base_dir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(base_dir))


def resolve_function(reference: str, *, base_dir: Path | None = None) -> Callable[..., Any]:
    """The function named by ``package.module:function`` (a dotted attribute path after the colon works too).

    A ValueError says what is wrong: the format, a module that does not import (and why), a missing attribute, or
    something that is not callable.

    >>> resolve_function("json:dumps")([1])
    '[1]'
    """
    module_name, colon, attribute = reference.partition(":")
    if not colon or not module_name or not attribute or any(not part.isidentifier() for part in attribute.split(".")):
        raise ValueError(f"expected {_FORMAT}, got {reference!r}")
    try:
        target: Any = _import_module(module_name, base_dir)
    except ValueError:
        raise
    except Exception as exc:  # the module itself failed: a SyntaxError, an ImportError inside it, ...
        raise ValueError(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{reference!r} is a {type(target).__name__}, not a function")
    return target


class PythonProtocol(ProtocolBase):
    """Request body and prediction from two functions of yours, named as ``package.module:function``."""

    kind: Literal["python"] = "python"
    build_function: str = Field(alias="build", description="'package.module:function' building the request body")
    extract_function: str = Field(alias="extract", description="'package.module:function' finding the prediction")
    default_path: ClassVar[str] = "/"
    _build: Callable[[Sample], Any] = PrivateAttr()
    _extract: Callable[[Any], Any] = PrivateAttr()

    @field_validator("build_function", "extract_function")
    @classmethod
    def _resolves(cls, value: str, info: ValidationInfo) -> str:
        base_dir = (info.context or {}).get("base_dir")
        resolve_function(value, base_dir=Path(base_dir) if base_dir is not None else None)
        return value

    @model_validator(mode="after")
    def _keep_functions(self, info: ValidationInfo) -> PythonProtocol:
        base_dir = (info.context or {}).get("base_dir")
        where = Path(base_dir) if base_dir is not None else None
        self._build = resolve_function(self.build_function, base_dir=where)
        self._extract = resolve_function(self.extract_function, base_dir=where)
        return self

    def build_body(self, sample: Sample) -> bytes:
        body = self._build(sample)
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        return dumps(body).encode()

    def extract(self, payload: Any) -> Any:
        try:
            return self._extract(payload)
        except ExtractionError:
            raise
        except Exception as exc:  # a bug or a surprise in the user's function must become an error row, not a lost one
            raise ExtractionError(f"{self.extract_function} raised {type(exc).__name__}: {exc}") from None
