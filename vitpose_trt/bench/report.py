"""The benchmark's report: the text table, the plot and the JSON, and the results folder."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path


from vitpose_trt.agreement import TIE_FRACTION
from vitpose_trt import atomic
from vitpose_trt.bench.environment import load_warning
from vitpose_trt.bench.runners import PLAIN_WORDS

STAGES = ("upload", "crop", "model", "decode", "download")


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:.0f}"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _fmt_px(v: float | None) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}" if v >= 0.001 else f"{v:.1e}" if v > 0 else "0"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """The human-readable report of a `run_benchmark` result: the model and machine, the latency
    table, the throughput table (when --batches asked for it), what was skipped and the notes."""
    warning = load_warning(result["environment"])
    out = _heading(result, warning)
    out += _latency_section(result, warning)
    if result["throughput"]:
        out += _throughput_section(result["throughput"])
    out += _skipped_and_notes(result)
    return "\n".join(out)


def _heading(result: dict, warning: str | None) -> list[str]:
    """The model, its weights, the settings, the machine and the measured matmul rates."""
    env, m, st = result["environment"], result["model"], result["settings"]
    weights = ("RANDOM WEIGHTS (fixed seed): speed does not depend on the weights; keypoints are meaningless"
               if m["random_weights"] else f"weights: {m['weights']}")
    gmac = m["macs_per_crop"]["total"] / 1e9
    src = result["scenarios"][0]["source"] if result["scenarios"] else "-"
    gpu = f"{env['gpu']} (driver {env['driver']}, CUDA {env['torch_cuda']})" if env["gpu"] else "none"
    out = [f"vitpose-trt bench: {m['variant']} (D={m['embed_dim']}, depth {m['depth']}, {m['decoder']} decoder, "
           f"K={m['num_keypoints']}, {m['input_size'][0]}x{m['input_size'][1]}): {gmac:.2f} GMAC = "
           f"{2 * gmac:.1f} GFLOP per crop",
           weights,
           f"mode {st['mode']}, flip test {'on' if st['flip_test'] else 'off'}; frame "
           f"{st['frame_size'][1]}x{st['frame_size'][0]} in host memory, boxes: {src}",
           f"CPU: {env['cpu']}, {env['cpu_cores']} cores; GPU: {gpu}",
           f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, transformers {env['transformers']}, "
           f"tensorrt {env['tensorrt'] or 'not installed'}; C++ ext {'yes' if env['extension_cpp'] else 'no'}, "
           f"CUDA kernels {'yes' if env['extension_cuda'] else 'no'}"]
    for key, peak in result["matmul"].items():
        out.append(f"measured dense matmul rate ({key}, {peak['dtype']} {peak['n']}^3): {peak['tflops']:.3g} TFLOP/s")
    acc = result.get("accuracy") or {}
    if acc.get("weights"):
        out.append(f"accuracy columns: {acc['weights']}")
    if warning:
        out.append(warning)
    return out


def _latency_section(result: dict, warning: str | None) -> list[str]:
    """The latency-per-frame table, the rows that failed, what each row is, and how to read the columns."""
    out = ["", "Latency per frame (ms; stage columns are medians; n = timed iterations, p99 means little when n "
           "is small)"]
    header = ["alternative", "people", "dev", *STAGES, "e2e med", "p90", "p99", "n", "pre+post", "x base",
              "kp counted", "max err px", "ties", "excl ties"]
    ran = [r for r in result["rows"] if r.get("status") == "ok"]
    out.append(_table(header, [_latency_cells(r) for r in ran]) if ran else "(no row ran)")
    failed = [f"  {r['alternative']}, {r['people']} people: {r.get('reason', 'failed')}"
              for r in result["rows"] if r.get("status") != "ok"]
    if failed:
        out += ["Failed:", *failed]
    out.append("Rows:")
    described = {r["alternative"]: r.get("description", "") for r in result["rows"]}
    for name in dict.fromkeys([*described, *result["skipped"]]):
        out.append(f"  {name}: {PLAIN_WORDS.get(name) or described.get(name) or '-'}")
    out.append("pre+post: (crop + decode) / e2e. x base: e2e speed-up over the baseline row at the same people count.")
    out.append("max err px: largest keypoint distance (frame pixels) to the FP32 reference (PyTorch FP32 CPU + "
               "numpy pre/post) on the same frame. kp counted: keypoints whose reference heatmap has a clear peak "
               f"(its maximum beats every value more than 1.5 heatmap px away by >= {100 * TIE_FRACTION:g}% of the "
               "peak's prominence, peak - median); excl ties: max err px over those. ties: the other keypoints "
               "whose argmax moved more than 1.5 heatmap px (a near-equal maximum won).")
    if (result.get("accuracy") or {}).get("random_weights"):
        out.append("  Random weights give flat heatmaps with many near-equal maxima, so any rounding difference "
                   "(C++ vs OpenCV crops, FP16) moves some keypoints far: read 'excl ties', or measure with real "
                   "peaks (the fixture model, or checkpoint=, the CLI's --checkpoint).")
    if warning:
        out.append(warning)
    return out


def _latency_cells(r: dict) -> list[str]:
    """One latency row that ran, as the table's cells."""
    stages = [_fmt_ms(r["stages"][s]["median"]) if s in r["stages"] else "-" for s in STAGES]
    e = r["e2e"]
    pp = f"{100 * r['pre_post_fraction']:.1f}%" if r.get("pre_post_fraction") is not None else "-"
    sp = f"{r['speedup_vs_baseline']:.2f}" if r.get("speedup_vs_baseline") is not None else "-"
    metric = r.get("accuracy")
    counted = f"{metric['counted']}/{metric['keypoints']}" if metric else "-"
    return [r["alternative"], str(r["people"]), f"{r['device']} {r['precision']}", *stages,
            _fmt_ms(e["median"]), _fmt_ms(e["p90"]), _fmt_ms(e["p99"]), str(e["n"]), pp, sp, counted,
            _fmt_px(r.get("max_px")), str(r.get("ties", "-")), _fmt_px(r.get("max_px_excl_ties"))]


def _throughput_section(throughput: list[dict]) -> list[str]:
    """The model-throughput table, and the batch sizes each alternative skipped (and why)."""
    out = ["", "Model throughput (the model alone, crops already in place)"]
    header = ["alternative", "batch", "dev", "model ms", "n", "crops/s", "TFLOP/s", "of matmul"]
    rows = []
    skipped: dict[tuple[str, str], list[str]] = {}
    for r in throughput:
        if r.get("status") != "ok":
            skipped.setdefault((r["alternative"], r.get("reason", "skipped")), []).append(str(r["batch"]))
            continue
        frac = f"{100 * r['fraction_of_matmul']:.1f}%" if r.get("fraction_of_matmul") is not None else "-"
        rows.append([r["alternative"], str(r["batch"]), f"{r['device']} {r['precision']}",
                     _fmt_ms(r["model_ms"]["median"]), str(r["model_ms"]["n"]), f"{r['crops_per_s']:.3g}",
                     f"{r['tflops']:.3g}", frac])
    out.append(_table(header, rows) if rows else "(no batch ran)")
    for (name, reason), bs in skipped.items():
        out.append(f"  {name}, batch {','.join(bs)}: skipped ({reason})")
    out.append("of matmul: achieved model TFLOP/s over the dense matmul rate measured above on the same device.")
    return out


def _skipped_and_notes(result: dict) -> list[str]:
    """The alternatives that did not run (and why), and the rows' notes."""
    out = []
    if result["skipped"]:
        out += ["", "Skipped:"]
        out += [f"  {name}: {reason}" for name, reason in result["skipped"].items()]
    notes = {(r["alternative"], n) for r in result["rows"] for n in r.get("notes", [])}
    if notes:
        out.append("Notes:")
        out += [f"  {name}: {note}" for name, note in sorted(notes)]
    return out


def _int_ticks(ax, values) -> None:
    values = sorted(set(values))
    if values:
        ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.set_xticklabels([str(v) for v in values])
        ax.minorticks_off()


def _series(rows: list[dict], x: str, y: Callable[[dict], float]) -> dict[str, list[tuple[int, float]]]:
    """{alternative: sorted [(x, y)]} over the rows that ran."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok":
            out[r["alternative"]].append((r[x], y(r)))
    return {name: sorted(pts) for name, pts in out.items()}


def _plot_lines(ax, series: dict[str, list[tuple[int, float]]], xlabel: str, ylabel: str, title: str) -> None:
    for name, pts in series.items():
        ax.plot([p for p, _ in pts], [v for _, v in pts], marker="o", label=name)
    _int_ticks(ax, [p for pts in series.values() for p, _ in pts])
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log", title=title)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8)


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no window)."""
    # lazy: matplotlib is optional (pip install "vitpose-trt[plot]"), needed only for the plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(result: dict, path: str | os.PathLike) -> Path:
    """PNG: e2e median latency vs people per frame, and throughput vs batch, one line per alternative."""
    fig = make_figure(result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    _pyplot().close(fig)
    return path


def make_figure(result: dict):
    """The plot's matplotlib Figure (Agg backend): latency per frame and, when --batches asked for it,
    model throughput (a panel that says why it is empty when no batch size could run)."""
    plt = _pyplot()
    batches = bool(result["settings"]["batches"])
    fig, axes = plt.subplots(1, 2 if batches else 1, figsize=(12 if batches else 6.5, 4.5), squeeze=False)
    latency = _series(result["rows"], "people", lambda r: r["e2e"]["median"])
    _plot_lines(axes[0][0], latency, "people per frame", "end-to-end latency, median (ms)", "latency per frame")
    if batches:
        ax2 = axes[0][1]
        throughput = _series(result["throughput"], "batch", lambda r: r["crops_per_s"])
        _plot_lines(ax2, throughput, "batch size (crops)", "crops / s", "model throughput")
        if not throughput:
            ax2.text(0.5, 0.5, "no batch size could run (see the table)", ha="center", va="center",
                     transform=ax2.transAxes, fontsize=10)
            ax2.set(yscale="linear", xticks=[], yticks=[])
    m = result["model"]
    note = ", RANDOM WEIGHTS" if m["random_weights"] else ""
    dev = result["environment"]["gpu"] or result["environment"]["cpu"]
    fig.suptitle(f"vitpose-trt bench: {m['variant']}{note} on {dev}", fontsize=10)
    fig.tight_layout()
    return fig


def write_results(result: dict, out_dir: str | os.PathLike, *, plot: bool = True) -> dict[str, Path]:
    """Write the table (table.txt), the numbers (bench.json) and, with matplotlib, the plot
    (bench.png) into `out_dir` (created). Returns {"table", "json", "plot"} -> path of what was written.

    Raises:
        ImportError: `plot` is true and matplotlib is not installed (the table and JSON are written first).
    """
    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    written = {"table": atomic.atomic_write(out / "table.txt", format_table(result) + "\n"),
               "json": atomic.write_json(out / "bench.json", result, indent=1)}
    if plot:
        written["plot"] = plot_results(result, out / "bench.png")
    return written



