"""How a function or constructor takes its settings: a config dataclass, and its fields by name over it.

    def build(source, output, config: BuildConfig | None = None, **options):
        config = with_options(BuildConfig, config, options)

`build(src, out, max_batch=4)`, `build(src, out, BuildConfig(max_batch=4))` and
`build(src, out, BuildConfig(max_batch=2), max_batch=4)` build the same engine; a misspelt option is
a TypeError that names it. The config checks its own values when it is made (`__post_init__`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


def with_options(cls: type[C], config: C | None, options: Mapping[str, Any]) -> C:
    """`config` (default: `cls()`) with `options`, fields of `cls` by name, replacing its values.

    Raises:
        TypeError: `config` is not a `cls`, or an option is no field of `cls` (the message names it
            and lists the fields).
        ValueError: whatever `cls` refuses when it is made (its `__post_init__` checks).
    """
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    names = [f.name for f in fields(cls) if f.init]
    unknown = [name for name in options if name not in names]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise TypeError(f"unknown option{'s' if len(unknown) > 1 else ''} {listed}: not a {cls.__name__} field "
                        f"(its fields: {', '.join(names)})")
    return cls(**options) if config is None else replace(config, **options)
