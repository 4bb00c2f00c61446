"""Text tables from a benchmark JSON (pytest-benchmark's file, with the suite's extra_info and "fastconv" section).

Times are the minimum over rounds (the least disturbed by other work on the machine); the JSON keeps all stats.
Rows of named shapes make one table per shape and a summary; rows of network layers make one table per network
and batch size, and a summary per network, batch and pass of auto against torch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass

from fastconv.bench.cases import BACKEND_CHOICES
from fastconv.bench.networks import LAYERS, NETWORKS
from fastconv.bench.ops import OPS
from fastconv.bench.shapes import SHAPES

PASSES = ("fwd", "fwd+bwd")


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
    network: str | None = None  # the rest: a network layer's row
    layer: str | None = None
    batch: int | None = None
    count: int | None = None

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
        """Backend columns with at least one row, in the registry's order (torch last), each followed by its
        other layouts ("numba NHWC")."""
        present = {row.backend for row in self.rows}
        return [label for name in BACKEND_CHOICES for label in sorted(present)
                if label == name or label.startswith(name + " ")]

    def per_shape(self) -> Results:
        """The rows of named shapes."""
        return Results([row for row in self.rows if row.network is None], self.info)

    def per_network(self) -> Results:
        """The rows of network layers."""
        return Results([row for row in self.rows if row.network is not None], self.info)


def load(path) -> Results:
    """Results of a JSON file written by the suite (``--benchmark-json``)."""
    with open(path) as handle:
        data = json.load(handle)
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench["extra_info"]
        rows.append(Row(op=info["op"], shape=info["shape"], dtype=info["dtype"], backend=info["backend"],
                        seconds=bench["stats"]["min"], describe=info.get("describe", ""), flops=info.get("flops"),
                        bytes=info.get("bytes"), peak_bytes=info.get("peak_bytes"), kernel=info.get("kernel"),
                        network=info.get("network"), layer=info.get("layer"), batch=info.get("batch"),
                        count=info.get("count")))
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
        width = max(8, *(len(row.backend) for row in rows))
        header = f"  {'backend':<{width}} {'time ms':>9} {'vs best':>8} " + (
            f"{'GFLOP/s':>8} {'% sgemm':>8}" if conv else f"{'GB/s':>8}") + f" {'peak MB':>8}  kernel"
        lines = [f"{op}  {shape}  {rows[0].describe}  {dtype}", header]
        for row in rows:
            rate = _rate_columns(row, results.sgemm_gflops)
            lines.append(f"  {row.backend:<{width}} {format_ms(row.seconds):>9} {row.seconds / rows[0].seconds:>7.2f}x "
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


@dataclass(frozen=True)
class LayerResult:
    """One distinct layer in one pass: auto's time, torch's (None without a torch row), and its conv flops."""

    name: str
    count: int
    seconds: float
    torch_seconds: float | None = None
    flops: int | None = None

    @property
    def ratio(self) -> float:
        return self.seconds / self.torch_seconds

    @property
    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / self.seconds / 1e9


@dataclass(frozen=True)
class NetworkSummary:
    """auto over the distinct layers of one network (or "all" of a run's networks), batch size, pass and dtype."""

    network: str
    batch: int
    pass_name: str
    dtype: str
    layers: tuple[LayerResult, ...]

    @property
    def compared(self) -> tuple[LayerResult, ...]:
        """The layers torch ran too."""
        return tuple(layer for layer in self.layers if layer.torch_seconds is not None)

    @property
    def geomean(self) -> float:
        """Geometric mean of auto / torch over the compared layers, each distinct layer once."""
        return _geometric_mean([layer.ratio for layer in self.compared])

    @property
    def at_or_under(self) -> int:
        """Compared layers where auto takes at most torch's time."""
        return sum(layer.ratio <= 1.0 for layer in self.compared)

    @property
    def share_at_or_under(self) -> float:
        return self.at_or_under / len(self.compared)

    @property
    def worst(self) -> LayerResult:
        return max(self.compared, key=lambda layer: layer.ratio)

    @property
    def network_ratio(self) -> float:
        """auto / torch for the whole network: every compared layer as often as it occurs."""
        return (sum(layer.count * layer.seconds for layer in self.compared)
                / sum(layer.count * layer.torch_seconds for layer in self.compared))

    @property
    def seconds(self) -> float:
        """auto's time for the whole network (its layers in this pass, each as often as it occurs)."""
        return sum(layer.count * layer.seconds for layer in self.layers)

    @property
    def gflops(self) -> float | None:
        """auto's rate over the whole network's convolutions (None when the pass has none)."""
        convs = self._convs()
        seconds = sum(layer.count * layer.seconds for layer in convs)
        return sum(layer.count * layer.flops for layer in convs) / seconds / 1e9 if convs else None

    @property
    def slowest(self) -> LayerResult | None:
        """The conv layer with auto's lowest GFLOP/s."""
        return min(self._convs(), key=lambda layer: layer.gflops, default=None)

    def _convs(self) -> list[LayerResult]:
        return [layer for layer in self.layers if layer.flops is not None]


def network_summaries(results: Results) -> list[NetworkSummary]:
    """Per network, batch size, pass and dtype, auto's times on each distinct layer (with torch's where it ran);
    then the same over all networks together when there are several. Layers auto did not run are left out."""
    groups: dict[tuple, dict[str, dict[str, Row]]] = {}
    for row in sorted(results.rows, key=lambda row: _layer_index(row.layer)):
        if row.network is not None and row.op in OPS:
            key = (row.network, row.batch, OPS[row.op].pass_name, row.dtype)
            groups.setdefault(key, {}).setdefault(row.layer, {})[row.backend] = row
    summaries = [NetworkSummary(*key, tuple(_layer_result(by_backend["auto"], by_backend.get("torch"))
                                            for by_backend in layers.values() if "auto" in by_backend))
                 for key, layers in sorted(groups.items(), key=lambda item: _summary_order(*item[0]))]
    summaries = [summary for summary in summaries if summary.layers]
    if len({summary.network for summary in summaries}) > 1:
        summaries += _overall(summaries)
    return summaries


def _layer_result(auto: Row, torch: Row | None) -> LayerResult:
    return LayerResult(auto.layer, auto.count or 1, auto.seconds, torch.seconds if torch else None, auto.flops)


def _overall(summaries: list[NetworkSummary]) -> list[NetworkSummary]:
    """One summary per batch size, pass and dtype over every network's layers."""
    merged: dict[tuple, list[LayerResult]] = {}
    for summary in summaries:
        merged.setdefault((summary.batch, summary.pass_name, summary.dtype), []).extend(summary.layers)
    return [NetworkSummary("all", *key, tuple(layers))
            for key, layers in sorted(merged.items(), key=lambda item: _summary_order("all", *item[0]))]


_LAYER_ORDER = {name: i for i, name in enumerate(LAYERS)}
_NETWORK_ORDER = {name: i for i, name in enumerate(NETWORKS)}


def _layer_index(layer: str | None) -> int:
    return _LAYER_ORDER.get(layer, len(_LAYER_ORDER))


def _network_index(network: str) -> int:
    """Position in the network table ("all" and unknown names last)."""
    return _NETWORK_ORDER.get(network, len(_NETWORK_ORDER))


def _summary_order(network: str, batch: int, pass_name: str, dtype: str) -> tuple:
    return _network_index(network), batch, PASSES.index(pass_name), dtype


def format_network_tables(results: Results) -> str:
    """One markdown table per network, batch size and dtype: per layer and op, every backend's time (ms),
    auto / torch when both ran, auto's rate and choice."""
    backends = results.backends()
    compare = "auto" in backends and "torch" in backends
    blocks = []
    for (network, batch, dtype), rows in _network_groups(results.rows).items():
        heads = ["layer", "op", "geometry", "count", *backends, *(["auto / torch"] if compare else []),
                 "auto rate", "auto chose"]
        lines = [f"{network}, batch {batch}{_dtype_suffix(dtype)} (ms per call; count: times the layer occurs)",
                 "| " + " | ".join(heads) + " |", "|---|---|---|" + "---:|" * (len(heads) - 4) + "---|"]
        for (layer, op), group in rows.items():
            lines.append("| " + " | ".join(_layer_cells(layer, op, group, backends, compare)) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _network_groups(rows: list[Row]) -> dict[tuple, dict[tuple[str, str], dict[str, Row]]]:
    """(network, batch, dtype) -> (layer, op) -> backend -> row, in network, batch and layer order."""
    op_order = {name: i for i, name in enumerate(OPS)}
    groups: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda row: (_network_index(row.network), row.batch, row.dtype, _layer_index(row.layer),
                                             op_order.get(row.op, len(op_order)))):
        layer_ops = groups.setdefault((row.network, row.batch, row.dtype), {})
        layer_ops.setdefault((row.layer, row.op), {})[row.backend] = row
    return groups


def _layer_cells(layer: str, op: str, rows: dict[str, Row], backends: list[str], compare: bool) -> list[str]:
    first = next(iter(rows.values()))
    cells = [layer, op, first.describe, str(first.count)]
    cells += [format_ms(rows[name].seconds) if name in rows else "" for name in backends]
    auto = rows.get("auto")
    if compare:
        cells.append(format_ratio(auto.seconds / rows["torch"].seconds) if auto and "torch" in rows else "")
    cells.append(_rate(auto) if auto else "")
    cells.append((auto.kernel or "") if auto else "")
    return cells


def _rate(row: Row) -> str:
    if row.flops is not None:
        return f"{row.flops / row.seconds / 1e9:.1f} GFLOP/s"
    return f"{row.bytes / row.seconds / 1e9:.1f} GB/s"


def _dtype_suffix(dtype: str) -> str:
    return "" if dtype == "float32" else f" {dtype}"


def format_network_summary(results: Results) -> str:
    """A legend and a markdown table, one line per network, batch size and pass (and over all networks): auto /
    torch as a geometric mean over the distinct layers, the share of layers where auto <= torch, the worst layer,
    and the whole network's time ratio. Without torch rows, auto's whole-network time and conv GFLOP/s instead."""
    summaries = network_summaries(results)
    if not summaries:
        return "no auto rows: the network summary compares auto with torch"
    passes = "fwd: the convs forward; fwd+bwd: the convs and pools forward+backward"
    if any(summary.compared for summary in summaries):
        return (f"auto / torch of the min times ({passes}); geomean over the network's distinct layers; whole "
                f"network: every layer as often as it occurs\n\n{_ratio_table(summaries)}")
    return (f"{_no_torch_note(results)}\n({passes}; whole network: every layer as often as it occurs)\n\n"
            f"{_time_table(summaries)}")


def _ratio_table(summaries: list[NetworkSummary]) -> str:
    lines = ["| network | batch | pass | layers | geomean auto / torch | auto <= torch | worst layer (auto / torch) "
             "| whole network |", "|---|---:|---|---:|---:|---:|---|---:|"]
    for s in summaries:
        if not s.compared:
            continue
        compared = len(s.compared)
        lines.append(f"| {s.network} | {s.batch}{_dtype_suffix(s.dtype)} | {s.pass_name} | {compared} "
                     f"| {format_ratio(s.geomean)} | {s.share_at_or_under:.0%} ({s.at_or_under}/{compared}) "
                     f"| {s.worst.name} {format_ratio(s.worst.ratio)} | {format_ratio(s.network_ratio)} |")
    return "\n".join(lines)


def _time_table(summaries: list[NetworkSummary]) -> str:
    lines = ["| network | batch | pass | layers | auto ms (whole network) | auto GFLOP/s (convs) "
             "| slowest conv layer (GFLOP/s) |", "|---|---:|---|---:|---:|---:|---|"]
    for s in summaries:
        gflops = f"{s.gflops:.1f}" if s.gflops is not None else ""
        slowest = f"{s.slowest.name} {s.slowest.gflops:.1f}" if s.slowest else ""
        lines.append(f"| {s.network} | {s.batch}{_dtype_suffix(s.dtype)} | {s.pass_name} | {len(s.layers)} "
                     f"| {format_ms(s.seconds)} | {gflops} | {slowest} |")
    return "\n".join(lines)


def _no_torch_note(results: Results) -> str:
    if results.info.get("torch") is None:
        return ("torch is not installed here, so there is no reference to compare with: auto's own times and "
                "GFLOP/s follow (pip install torch in this environment for auto / torch)")
    return "this run has no torch rows (see the skips below): auto's own times and GFLOP/s follow"
