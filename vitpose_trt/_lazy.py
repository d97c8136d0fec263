"""Loaded on first use, so `import vitpose_trt` stays light: module attributes (PEP 562) and
optional modules (`lazy_module`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_attributes(module: str, table: Mapping[str, str],
                    names: list[str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `module`: `table` maps a public name to the module defining it;
    a value is imported on first access, then cached in the module's namespace."""

    def __getattr__(name: str) -> object:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[module], name, value)
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__


class lazy_module:  # noqa: N801 -- stands where a module name stands: `trt = lazy_module("tensorrt")`
    """An optional module, imported at its first attribute access and looked up in `sys.modules`
    at every access (so a test's stand-in module is seen); ImportError when it is not installed.

    Under `if TYPE_CHECKING: import tensorrt as trt` / `else: trt = lazy_module("tensorrt")`, mypy
    types `trt.X` from the module's stubs while nothing imports it before it is used.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> object:
        module = sys.modules.get(self._name) or importlib.import_module(self._name)  # the dict first: hot paths
        return getattr(module, attr)
