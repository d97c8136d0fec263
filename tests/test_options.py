"""`with_options`: the one way a function takes a config dataclass and its fields by name over it."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vitpose_trt.options import with_options


@dataclass(frozen=True)
class Settings:
    size: int = 1
    name: str = "a"
    derived: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


def test_options_make_a_config_or_replace_its_fields():
    assert with_options(Settings, None, {}) == Settings()
    assert with_options(Settings, None, {"size": 3}) == Settings(size=3)
    given = Settings(size=3, name="b")
    assert with_options(Settings, given, {}) == given
    assert with_options(Settings, given, {"name": "c"}) == Settings(size=3, name="c")


def test_an_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match=r"unknown option 'sise': not a Settings field \(its fields: size, name\)"):
        with_options(Settings, None, {"sise": 3})
    with pytest.raises(TypeError, match=r"unknown options 'derived', 'colour'"):  # init=False: no option either
        with_options(Settings, Settings(), {"derived": 1, "colour": "red"})


def test_a_config_of_another_class_is_a_type_error():
    with pytest.raises(TypeError, match="config must be a Settings, got str"):
        with_options(Settings, "big", {})  # type: ignore[arg-type]


def test_the_config_checks_its_values_when_made():
    with pytest.raises(ValueError, match="size must be >= 1"):
        with_options(Settings, None, {"size": 0})
    with pytest.raises(ValueError, match="size must be >= 1"):
        with_options(Settings, Settings(size=2), {"size": 0})


# Every function that takes a config and its fields by name, with its other arguments; each checks its
# options before any work, so a misspelt one fails at once.
ENTRY_POINTS = {
    "vitpose_trt.bench.run:run_benchmark": (),
    "vitpose_trt.bench.video:run_video_benchmark": (),
    "vitpose_trt.video:process_video": (None, None, "out"),
    "vitpose_trt.evaluate:evaluate": ("images", "ann.json"),
    "vitpose_trt.triton.repository:write_repository": ("out", "model.engine"),
    "build_engine:build": (None, "x.engine"),
    "build_engine.tensorrt_build:build_pose": (None, "x.engine"),
    "build_engine.detector_build:build_detector": ("det.onnx", "det.engine"),
    "build_engine.quantize:quantize": ("m.onnx", "q.onnx"),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_config_taking_function_names_a_misspelt_option(entry):
    import importlib

    module, name = entry.split(":")
    function = getattr(importlib.import_module(module), name)
    with pytest.raises(TypeError, match="unknown option 'bogus'"):
        function(*ENTRY_POINTS[entry], bogus=1)
