"""Text tables from a benchmark JSON (pytest-benchmark's file, with the suite's extra_info and "fastconv" section).

Times are the minimum over rounds (the least disturbed by other work on the machine); the JSON keeps all stats.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass

from fastconv.bench.cases import BACKEND_CHOICES
from fastconv.bench.ops import OPS
from fastconv.bench.shapes import SHAPES


@dataclass(frozen=True)
class Row:
    """One benchmark: a backend on one op, shape and dtype."""

    op: str
    shape: str
    dtype: str
    backend: str
    seconds: float
    describe: str = ""
    flops: int | None = None
    bytes: int | None = None
    peak_bytes: int | None = None
    kernel: str | None = None

    @property
    def case(self) -> tuple[str, str, str]:
        return self.op, self.shape, self.dtype


@dataclass(frozen=True)
class Results:
    rows: list[Row]
    info: dict  # the "fastconv" section: sgemm_gflops, threads, cpu, versions, skipped

    @property
    def sgemm_gflops(self) -> float | None:
        return self.info.get("sgemm_gflops")

    def cases(self) -> dict[tuple[str, str, str], list[Row]]:
        """(op, shape, dtype) -> its rows, fastest first; cases in the order of the op and shape tables."""
        order = {name: i for i, name in enumerate((*OPS, *SHAPES))}
        cases: dict[tuple, list[Row]] = {}
        for row in sorted(self.rows, key=lambda r: (order.get(r.op, 99), order.get(r.shape, 99), r.dtype)):
            cases.setdefault(row.case, []).append(row)
        return {case: sorted(rows, key=lambda r: r.seconds) for case, rows in cases.items()}

    def backends(self) -> list[str]:
        """Backends with at least one row, in the registry's order (torch last)."""
        present = {row.backend for row in self.rows}
        return [name for name in BACKEND_CHOICES if name in present]


def load(path) -> Results:
    """Results of a JSON file written by the suite (``--benchmark-json``)."""
    with open(path) as handle:
        data = json.load(handle)
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench["extra_info"]
        rows.append(Row(op=info["op"], shape=info["shape"], dtype=info["dtype"], backend=info["backend"],
                        seconds=bench["stats"]["min"], describe=info.get("describe", ""), flops=info.get("flops"),
                        bytes=info.get("bytes"), peak_bytes=info.get("peak_bytes"), kernel=info.get("kernel")))
    return Results(rows, data.get("fastconv", {}))


def format_ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def format_ratio(ratio: float) -> str:
    """Two decimals, or two significant digits below 0.1 (so that 0.004 does not print as 0.00)."""
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def format_tables(results: Results) -> str:
    """One small table per (op, shape, dtype): backend, time, ratio to the fastest, rate, peak memory."""
    blocks = []
    for (op, shape, dtype), rows in results.cases().items():
        conv = rows[0].flops is not None
        header = f"  {'backend':<8} {'time ms':>9} {'vs best':>8} " + (
            f"{'GFLOP/s':>8} {'% sgemm':>8}" if conv else f"{'GB/s':>8}") + f" {'peak MB':>8}  kernel"
        lines = [f"{op}  {shape}  {rows[0].describe}  {dtype}", header]
        for row in rows:
            rate = _rate_columns(row, results.sgemm_gflops)
            lines.append(f"  {row.backend:<8} {format_ms(row.seconds):>9} {row.seconds / rows[0].seconds:>7.2f}x "
                         f"{rate} {_megabytes(row.peak_bytes):>8}  {row.kernel or ''}".rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _rate_columns(row: Row, sgemm_gflops: float | None) -> str:
    if row.flops is None:
        return f"{row.bytes / row.seconds / 1e9:>8.1f}"
    gflops = row.flops / row.seconds / 1e9
    percent = f"{100 * gflops / sgemm_gflops:.1f}%" if sgemm_gflops and row.dtype == "float32" else "-"
    return f"{gflops:>8.1f} {percent:>8}"


def _megabytes(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1e6:.1f}"


def format_summary(results: Results, reference: str = "auto") -> str:
    """A markdown table, one line per case: each backend's time (ms, fastest in bold) and reference's time
    relative to torch and to im2col; geometric means of those ratios per op underneath, over the batched shapes
    (the small batch-1 shapes, there for naive, measure per-call overhead and are left out of the means)."""
    backends = results.backends()
    compared = [other for other in ("torch", "im2col") if other in backends and other != reference]
    ratio_heads = [f"{reference} / {other}" for other in compared] if reference in backends else []
    lines = ["| op | shape | " + " | ".join(backends + ratio_heads) + " |",
             "|---|---|" + "---:|" * (len(backends) + len(ratio_heads))]
    ratios: dict[tuple[str, str], list[float]] = {}
    for (op, shape, dtype), rows in results.cases().items():
        times = {row.backend: row.seconds for row in rows}
        cells = [_time_cell(times, name, rows[0].seconds) for name in backends]
        for other, head in zip(compared, ratio_heads):
            if reference in times and other in times:
                ratio = times[reference] / times[other]
                if not getattr(SHAPES.get(shape), "small", False):
                    ratios.setdefault((op, head), []).append(ratio)
                cells.append(format_ratio(ratio))
            else:
                cells.append("")
        label = shape if dtype == "float32" else f"{shape} {dtype}"
        lines.append(f"| {op} | {label} | " + " | ".join(cells) + " |")
    means = [f"geometric mean of {head} over {op}: {format_ratio(_geometric_mean(values))} "
             f"({len(values)} batched shapes)" for (op, head), values in ratios.items()]
    return "\n".join(lines + ([""] + means if means else []))


def _geometric_mean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def _time_cell(times: dict[str, float], backend: str, fastest: float) -> str:
    if backend not in times:
        return ""
    text = format_ms(times[backend])
    return f"**{text}**" if times[backend] == fastest else text


def format_skips(results: Results) -> str:
    """Skipped benchmarks, counted per backend and reason."""
    counts = Counter((skip.get("backend", "?"), skip["reason"]) for skip in results.info.get("skipped", []))
    return "\n".join(f"skipped {count}x {backend}: {reason}" for (backend, reason), count in counts.items())


def format_machine(results: Results) -> str:
    info = results.info
    sgemm = f"{info['sgemm_gflops']:.0f} GFLOP/s" if info.get("sgemm_gflops") else "not measured"
    torch = f", torch {info['torch']}" if info.get("torch") else ""
    return (f"fastconv {info.get('version', '?')} on {info.get('cpu', '?')}, {info.get('threads', '?')} threads, "
            f"numpy {info.get('numpy', '?')}{torch}; sgemm peak measured in this run: {sgemm}")
