"""Module attributes loaded on first use (PEP 562), so `import vitpose_trt` stays light."""

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
