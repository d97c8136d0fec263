"""The benchmark run: `BenchConfig` -> every alternative on every scenario -> the result dict."""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vitpose_trt import checkpoint as ckpt
from vitpose_trt import model as model_module  # looked up at call time: tests swap build_random_model
from vitpose_trt.agreement import TIE_FRACTION, TIE_RADIUS_PX
from vitpose_trt.bench.environment import cuda_reason, environment, extension_status, loadavg
from vitpose_trt.bench.measure import (
    Runner,
    Timer,
    measure_frames,
    measure_matmul_rate,
    measure_throughput,
    release_cuda,
    summarize,
)
from vitpose_trt.bench.reference import Reference, keypoint_disagreement, reference_keypoints
from vitpose_trt.bench.runners import FACTORIES, BenchContext, Skip, resolve_alternatives
from vitpose_trt.bench.scenarios import FRAME_SIZE, Scenario, build_scenarios
from vitpose_trt.coco import sample_checkpoint
from vitpose_trt.engines import PLAN_SUFFIXES, describe
from vitpose_trt.engines.base import check_threads
from vitpose_trt.engines.pytorch import torch_threads
from vitpose_trt.geometry import check_mode
from vitpose_trt.model import count_macs, warn_random_weights
from vitpose_trt.options import with_options

log = logging.getLogger(__name__)

CPU_EXTRA_WARMUP = 0  # on CPU rows the correctness run is the only warm-up (one ViTPose-B crop ~0.3-1 s)


@dataclass
class BenchConfig:
    """What to benchmark and how.

    Attributes:
        model: a ViTPose to benchmark (its FP32 CPU copy is the reference); default: `checkpoint`,
            else the fixed-seed random `variant`.
        checkpoint: weights for every alternative (official/HF checkpoint).
        variant: the random model's size when neither model nor checkpoint is given ("b").
        engine: a TensorRT plan (the tensorrt row), an .onnx (the onnxruntime row) or a checkpoint.
            A plan built from random weights matches the default random weights (same seed).
        people: people per frame, one scenario each.
        batches: batch sizes for the model-throughput table (empty: not measured).
        alternatives: "auto" or a comma-separated list of names / aliases (see ALTERNATIVES, ALIASES).
        iters: timed iterations per row (GPU; CPU rows usually stop at the time budget first).
        warmup: untimed iterations first on GPU rows (CPU rows: the correctness run is the warm-up).
        max_seconds_per_row: time budget per (alternative, scenario) and per (alternative, batch).
        mode / flip_test / flip_pairs: the pipeline variant.
        device: "cpu" skips every CUDA row; None uses the GPU where there is one.
        coco_sample: the coco-sample folder; None: the default place; False: synthetic frames.
        frame_size: (H, W) of the benchmark frame.
        threads: CPU threads for PyTorch and ONNX Runtime (None: their defaults, one per core).
        matmul: measure the dense matmul rate (for the throughput fraction).
        progress: show a tqdm progress bar on stderr.
        accuracy_weights: the weights of the accuracy columns. None (auto): when neither `model`
            nor `checkpoint` is given, the fixture model with real heatmap peaks
            (`vitpose_trt.coco.sample_checkpoint()`) where it is present, else the benchmark's own
            weights; a checkpoint path or a model: those; False: the benchmark's own weights. Each
            row is built a second time from them for one untimed run per scenario (rows tied to a
            given engine file keep the benchmark's weights).
        extra: more alternatives, name -> factory(BenchContext) -> Runner (tests, experiments).
    """

    model: Any = None
    checkpoint: str | os.PathLike | None = None
    variant: str = "b"
    engine: str | os.PathLike | None = None
    people: Sequence[int] = (1, 4, 16)
    batches: Sequence[int] = ()
    alternatives: str | Sequence[str] = "auto"
    iters: int = 50
    warmup: int = 5
    max_seconds_per_row: float = 10.0
    mode: str = "udp"
    flip_test: bool = False
    flip_pairs: Any = None
    device: str | None = None
    coco_sample: Any = None
    frame_size: tuple[int, int] = FRAME_SIZE
    threads: int | None = None
    matmul: bool = True
    progress: bool = True
    accuracy_weights: Any = None
    extra: dict[str, Callable[[BenchContext], Runner]] | None = field(default=None)

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.iters < 1 or self.warmup < 0 or self.max_seconds_per_row <= 0:
            raise ValueError(f"need iters >= 1, warmup >= 0 and max_seconds_per_row > 0; got {self.iters}, "
                             f"{self.warmup}, {self.max_seconds_per_row}")
        check_threads(self.threads)
        self.people = [int(p) for p in self.people]
        self.batches = [int(b) for b in self.batches]
        if not self.people:
            raise ValueError("people: give at least one people count")


def run_benchmark(config: BenchConfig | None = None, /, **options: Any) -> dict:
    """Run the benchmark and return every number (the dict `write_results` writes as bench.json).

    Args:
        config: a `BenchConfig`; `options` (its field names) override it or, without it, make one.

    Returns:
        {"environment", "model", "settings", "accuracy", "scenarios", "rows", "throughput",
        "matmul", "skipped"}.
    """
    cfg = with_options(BenchConfig, config, options)

    with torch_threads(cfg.threads):
        return _run(cfg)


# --------------------------------------------------------------------------------------------
# weights


def _load_weights(cfg: BenchConfig):
    """(model, plan_path, onnx_path, checkpoint): the FP32 CPU weights every alternative shares, the
    engine file, and where the weights came from."""
    model, checkpoint = cfg.model, cfg.checkpoint
    plan = onnx_path = None
    if cfg.engine is not None:
        p = Path(os.fspath(cfg.engine))
        if not p.exists():
            raise FileNotFoundError(f"engine, model or checkpoint not found: {p}")
        if p.suffix.lower() in PLAN_SUFFIXES:
            plan = p
        elif p.suffix.lower() == ".onnx":
            describe(p)  # a file that is not a pose model's ONNX fails here, not row by row minutes later
            onnx_path = p
        elif checkpoint is not None and Path(checkpoint) != p:
            raise ValueError("engine= is a checkpoint and checkpoint= names another (the CLI's --engine and "
                             "--checkpoint): give one of them")
        else:
            checkpoint = p
    if model is None:
        model = (ckpt.load_model(checkpoint, variant=cfg.variant) if checkpoint is not None
                 else model_module.build_random_model(cfg.variant))
    return _fp32_cpu(model), plan, onnx_path, checkpoint


def _fp32_cpu(model):
    p = next(model.parameters(), None)
    if p is not None and (p.device.type != "cpu" or p.dtype != torch.float32):
        model = copy.deepcopy(model)  # leave the caller's model where it is
    return model.eval().float().cpu()


@dataclass
class _Accuracy:
    """The accuracy columns' weights, their references per scenario, and the context to build rows."""

    description: str
    random_weights: bool
    ctx: BenchContext | None = None  # None: the benchmark's own weights and runners
    references: list[Reference] = field(default_factory=list)


def _accuracy_weights(cfg: BenchConfig):
    """(model or None, description): the weights of the accuracy columns (see BenchConfig)."""
    choice = cfg.accuracy_weights
    if choice is False or (choice is None and (cfg.model is not None or cfg.checkpoint is not None)):
        return None, ""
    if choice is None:
        path = sample_checkpoint()
        if path is None:
            log.info("the fixture model (../shared/fixtures/vitpose-s-coco-sample.pth) is absent: the accuracy "
                     "columns use the benchmark's own weights")
            return None, ""
        choice = path
    if isinstance(choice, (str, os.PathLike)):
        return _fp32_cpu(ckpt.load_model(choice)), f"{choice}"
    return _fp32_cpu(choice), "the given accuracy model"


# --------------------------------------------------------------------------------------------
# the run


def _run(cfg: BenchConfig) -> dict:
    """Every alternative on every scenario (and batch size): the result dict `run_benchmark` returns."""
    names = resolve_alternatives(cfg.alternatives) if cfg.alternatives else []
    factories = {n: FACTORIES[n] for n in names}
    factories.update(cfg.extra or {})
    model, plan, onnx_path, checkpoint = _load_weights(cfg)
    random_weights = bool(getattr(model, "random_weights", False))
    no_cuda = "device='cpu' (the CLI's --device cpu) was given" if cfg.device == "cpu" else cuda_reason()
    result: dict[str, Any] = {"environment": environment(),
                              "model": _model_summary(model.config, random_weights, checkpoint),
                              "settings": _settings(cfg, factories),
                              "rows": [], "throughput": [], "skipped": {}, "matmul": {}}
    if random_weights:
        warn_random_weights("benchmarking RANDOM weights: speed does not depend on the weights; keypoints are "
                            "meaningless")

    scenarios = build_scenarios(cfg.people, cfg.coco_sample, cfg.frame_size)
    result["scenarios"] = [{"people": s.people, "source": s.source, "frame": list(s.frame.shape)} for s in scenarios]
    references = _references(model, scenarios, cfg, "benchmark weights")

    with tempfile.TemporaryDirectory(prefix="vitpose_bench_") as tmp:
        cpu_impl = "cpp" if extension_status()[0] else "numpy"
        ctx = BenchContext(model=model, mode=cfg.mode, flip_test=cfg.flip_test, flip_pairs=cfg.flip_pairs,
                           cuda=not no_cuda, no_cuda_reason=no_cuda, plan_path=plan, onnx_path=onnx_path,
                           tmpdir=Path(tmp), cpu_impl=cpu_impl, threads=cfg.threads)
        acc = _accuracy_setup(cfg, ctx, scenarios, random_weights, Path(tmp))
        result["accuracy"] = {"weights": acc.description, "random_weights": acc.random_weights,
                              "source": "separate weights" if acc.ctx is not None else "benchmark weights",
                              "tie_fraction": TIE_FRACTION, "tie_radius_px": TIE_RADIUS_PX}
        if cfg.matmul:
            if ctx.cuda:
                result["matmul"]["cuda"] = measure_matmul_rate("cuda")
            result["matmul"]["cpu"] = measure_matmul_rate("cpu")
        _run_alternatives(factories, ctx, acc, scenarios, references, cfg, result)

    _matmul_fractions(result, cfg)
    _add_speedups(result["rows"])
    result["environment"]["load_average_end"] = loadavg()
    return result


def _model_summary(config, random_weights: bool, checkpoint) -> dict[str, Any]:
    """The result's "model": its architecture, FLOPs per crop and where the weights came from."""
    macs = count_macs(config)
    return {
        "variant": config.variant, "embed_dim": config.embed_dim, "depth": config.depth,
        "num_heads": config.num_heads, "decoder": config.decoder, "num_keypoints": config.num_keypoints,
        "input_size": list(config.input_size), "random_weights": random_weights,
        "weights": "random (fixed seed)" if random_weights else str(checkpoint or "given model"),
        "macs_per_crop": macs, "flops_per_crop": 2 * macs["total"],
    }


def _settings(cfg: BenchConfig, factories: dict) -> dict[str, Any]:
    """The result's "settings": what was asked for (the alternatives after resolving names and aliases)."""
    return {
        "people": list(cfg.people), "batches": list(cfg.batches), "alternatives": list(factories),
        "iters": cfg.iters, "warmup": cfg.warmup, "max_seconds_per_row": cfg.max_seconds_per_row,
        "mode": cfg.mode, "flip_test": cfg.flip_test,
        "engine": str(cfg.engine) if cfg.engine is not None else None, "frame_size": list(cfg.frame_size),
        "threads": cfg.threads,
    }


def _run_alternatives(factories: dict, ctx: BenchContext, acc: _Accuracy, scenarios, references,
                      cfg: BenchConfig, result: dict) -> None:
    """Each alternative in turn, set up, measured on every scenario and batch size, then released: its
    rows go into result["rows"] and ["throughput"], or it goes into result["skipped"] with the reason."""
    per_row = len(scenarios) + len(cfg.batches)
    bar = tqdm(total=len(factories) * per_row, desc="bench", unit="row", disable=not cfg.progress,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for name, factory in factories.items():
            bar.set_description(f"bench {name}")
            runner = _set_up(name, factory, ctx, result["skipped"])
            if runner is None:
                bar.update(per_row)
                continue
            accuracy = _accuracy_runs(name, factory, acc, scenarios, runner)
            result["rows"] += _run_scenarios(runner, scenarios, references, accuracy, cfg, bar)
            if cfg.batches:
                result["throughput"] += _throughput(runner, cfg, bar)
            del runner
            release_cuda()
    finally:
        bar.close()


def _set_up(name: str, factory, ctx: BenchContext, skipped: dict[str, str]) -> Runner | None:
    """The alternative's runner; None, with the reason in `skipped`, when it cannot run here or its
    setup fails (an alternative that breaks must not take the others down)."""
    try:
        return factory(ctx)
    except Skip as e:
        skipped[name] = str(e)
        log.info("%s: skipped (%s)", name, e)
    except Exception as e:
        log.warning("%s: cannot set up: %s", name, e, exc_info=log.isEnabledFor(logging.DEBUG))
        skipped[name] = f"setup failed: {type(e).__name__}: {e}"
    return None


def _references(model, scenarios: list[Scenario], cfg: BenchConfig, what: str) -> list[Reference]:
    log.info("computing the FP32 reference keypoints of the %s (PyTorch FP32 CPU + numpy pre/post)", what)
    out = []
    for s in scenarios:
        t = time.perf_counter()
        out.append(reference_keypoints(model, s.frame, s.boxes, cfg.mode, cfg.flip_test, cfg.flip_pairs))
        log.info("reference, %d people: %.1f s", s.people, time.perf_counter() - t)
    return out


def _accuracy_setup(cfg: BenchConfig, ctx: BenchContext, scenarios, random_weights: bool, tmp: Path) -> _Accuracy:
    model, where = _accuracy_weights(cfg)
    if model is None:
        note = " (random: only keypoints with a clear peak are compared, by the tie rule)" if random_weights else ""
        return _Accuracy(f"the benchmark's own weights{note}", random_weights)
    c = model.config
    description = (f"{c.variant} from {where} (real heatmap peaks), each row rebuilt from these weights for "
                   "one untimed run per scenario; rows tied to a given engine file use the benchmark's weights")
    (tmp / "accuracy").mkdir()
    acc_ctx = replace(ctx, model=model, plan_path=None, onnx_path=None, tmpdir=tmp / "accuracy")
    acc = _Accuracy(description, bool(getattr(model, "random_weights", False)), acc_ctx)
    acc.references = _references(model, scenarios, cfg, "accuracy weights")
    return acc


def _accuracy_runs(name: str, factory, acc: _Accuracy, scenarios, runner: Runner) -> list[dict] | None:
    """Per scenario, the disagreement of `name` rebuilt from the accuracy weights; None when the
    accuracy columns use the benchmark's weights (then the timing runner's correctness run does)."""
    if acc.ctx is None:
        return None
    try:
        acc_runner = factory(acc.ctx)
    except Exception as e:  # e.g. the tensorrt row: its engine file holds its own weights
        runner.notes.append(f"accuracy from the benchmark's weights (with the accuracy weights: {e})")
        return None
    out = []
    try:
        for scenario, ref in zip(scenarios, acc.references):
            if acc_runner.prepare is not None:
                acc_runner.prepare(scenario.frame, scenario.boxes)
            out.append(keypoint_disagreement(_run_once(acc_runner, scenario), ref))
    except Exception as e:
        log.warning("%s: the accuracy run failed: %s", name, e, exc_info=log.isEnabledFor(logging.DEBUG))
        runner.notes.append(f"accuracy from the benchmark's weights (the accuracy run failed: {e})")
        return None
    finally:
        del acc_runner
        release_cuda()
    return out


def _run_once(runner: Runner, scenario: Scenario):
    if runner.e2e is not None:
        return runner.e2e(scenario.frame, scenario.boxes)
    timer = Timer(runner.cuda, runner.stream).start()
    keypoints = runner.infer(scenario.frame, scenario.boxes, timer)
    timer.stop()
    return keypoints


def _run_scenarios(runner: Runner, scenarios, references, accuracy: list[dict] | None, cfg: BenchConfig,
                   bar) -> list[dict]:
    rows = []
    for i, (scenario, ref) in enumerate(zip(scenarios, references)):
        bar.set_description(f"bench {runner.name} {scenario.people}p")
        row: dict[str, Any] = {"alternative": runner.name, "people": scenario.people, "device": runner.device,
                               "precision": runner.precision, "description": runner.description,
                               "notes": list(runner.notes)}
        try:
            if runner.prepare is not None:
                runner.prepare(scenario.frame, scenario.boxes)
            # correctness first (this run is also the first warm-up)
            own = keypoint_disagreement(_run_once(runner, scenario), ref)
            row.update(accuracy[i] if accuracy is not None else own)
            row["accuracy_source"] = "separate weights" if accuracy is not None else "benchmark weights"
            if accuracy is not None:
                row["accuracy_benchmark_weights"] = own
            extra_warmup = max(0, cfg.warmup - 1) if runner.cuda else CPU_EXTRA_WARMUP
            m = measure_frames(runner, scenario, iters=cfg.iters, warmup=extra_warmup,
                               budget_s=cfg.max_seconds_per_row)
            row["status"] = "ok"
            row["iterations"] = m["iterations"]
            row["stages"] = {k: summarize(v) for k, v in m["samples"].items() if k != "e2e"}
            row["e2e"] = summarize(m["samples"]["e2e"])
            row["samples"] = m["samples"]
        except Exception as e:
            log.warning("%s, %d people: failed: %s", runner.name, scenario.people, e,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            row.update(status="failed", reason=f"{type(e).__name__}: {e}")
            release_cuda()
        rows.append(row)
        bar.update(1)
    return rows


def _throughput(runner: Runner, cfg: BenchConfig, bar) -> list[dict]:
    if runner.batch is None:
        bar.update(len(cfg.batches))
        return [{"alternative": runner.name, "batch": b, "status": "skipped",
                 "reason": "no batched model (one box at a time)"} for b in cfg.batches]
    warmup = cfg.warmup if runner.cuda else 1
    return measure_throughput(runner, cfg.batches, iters=cfg.iters, warmup=warmup,
                              budget_s=cfg.max_seconds_per_row, progress=bar)


def _matmul_fractions(result: dict, cfg: BenchConfig) -> None:
    """Achieved TFLOP/s per throughput row, and as a fraction of the measured matmul rate."""
    if cfg.matmul and any(r.get("device") == "cpu" for r in result["throughput"]):
        # CPU rates swing with whatever else runs on the machine: keep the better of a start and an end reading
        again = measure_matmul_rate("cpu")
        first = result["matmul"]["cpu"]
        readings = [first["tflops"], again["tflops"]]
        result["matmul"]["cpu"] = max(first, again, key=lambda m: m["tflops"])
        result["matmul"]["cpu"]["readings_tflops"] = readings
    flops = result["model"]["flops_per_crop"]
    for row in result["throughput"]:
        if row.get("status") == "ok":
            peak = result["matmul"].get("cuda" if row["device"] == "cuda" else "cpu")
            row["tflops"] = row["crops_per_s"] * flops / 1e12
            row["fraction_of_matmul"] = row["tflops"] / peak["tflops"] if peak else None


def unmet_requirements(result: dict, required: Sequence[str]) -> list[str]:
    """What keeps the `required` alternatives from counting as run: one line per problem.

    A required alternative must have set up (not be in "skipped"), and every one of its rows must be
    "ok"; a throughput row may also be skipped because it was predicted to exceed the time budget.
    """
    problems = []
    for name in required:
        if name in result["skipped"]:
            problems.append(f"{name}: did not run ({result['skipped'][name]})")
            continue
        rows = [r for r in result["rows"] if r["alternative"] == name]
        if not rows:
            problems.append(f"{name}: no rows (not among the alternatives run)")
        problems += [f"{name}, {r['people']} people: {r.get('status')} ({r.get('reason', '')})"
                     for r in rows if r.get("status") != "ok"]
        problems += [f"{name}, batch {r['batch']}: {r.get('status')} ({r.get('reason', '')})"
                     for r in result["throughput"] if r["alternative"] == name and r.get("status") != "ok"
                     and not str(r.get("reason", "")).startswith("predicted")]
    return problems


def _add_speedups(rows: list[dict]) -> None:
    """Per row: pre+post share of e2e, and speed-up over the baseline at the same people count."""
    base = {r["people"]: r["e2e"]["median"] for r in rows if r["alternative"] == "baseline" and r.get("status") == "ok"}
    for r in rows:
        if r.get("status") != "ok":
            continue
        e2e = r["e2e"]["median"]
        pre_post = sum(r["stages"][s]["median"] for s in ("crop", "decode") if s in r["stages"])
        r["pre_post_fraction"] = pre_post / e2e if "crop" in r["stages"] else None
        r["speedup_vs_baseline"] = base[r["people"]] / e2e if r["people"] in base else None


def int_list(text: str | Sequence[int] | None, what: str) -> list[int]:
    """"1,4,16" -> [1, 4, 16] (the CLI's list options); ValueError naming `what` otherwise."""
    if text is None or text == "":
        return []
    if not isinstance(text, str):
        return [int(v) for v in text]
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{what}: expected comma-separated positive integers, got {text!r}")
    return values
