"""Grouped bar chart of a benchmark run: one panel per op, one group of bars per shape, one bar per backend."""

from __future__ import annotations

from fastconv.bench.cases import BACKEND_CHOICES
from fastconv.bench.report import Results, format_machine


def plot(results: Results, path) -> None:
    """Write the chart (time per backend per shape, log scale) to path; the format follows its extension."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastconv[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results.cases()
    ops = list(dict.fromkeys(op for op, _, _ in cases))
    backends = results.backends()
    colors = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(BACKEND_CHOICES)}
    widest = max(sum(1 for case in cases if case[0] == op) for op in ops)
    height = 2.8 * len(ops) + 0.6  # inches; the top 0.6 hold the title and the legend
    fig, axes = plt.subplots(len(ops), 1, figsize=(max(7.0, 1.3 * widest + 2), height), squeeze=False)
    width = 0.8 / len(backends)
    for ax, op in zip(axes[:, 0], ops):
        op_cases = [case for case in cases if case[0] == op]
        for i, backend in enumerate(backends):
            bars = [(x, row.seconds * 1e3) for x, case in enumerate(op_cases)
                    for row in cases[case] if row.backend == backend]
            if bars:
                xs, ms = zip(*bars)
                ax.bar([x + (i - (len(backends) - 1) / 2) * width for x in xs], ms, width, label=backend,
                       color=colors[backend])
        ax.set_xticks(range(len(op_cases)), [_label(case) for case in op_cases])
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(op, fontsize=10, loc="left")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.set_axisbelow(True)
    handles, labels = _legend_entries(axes[:, 0])
    fig.text(0.01, 1 - 0.1 / height, format_machine(results).split(";")[0] + "  (time, lower is better)",
             fontsize=9, ha="left", va="top")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / height), ncol=len(labels),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _label(case: tuple[str, str, str]) -> str:
    _, shape, dtype = case
    return shape if dtype == "float32" else f"{shape}\n{dtype}"


def _legend_entries(axes):
    """Each backend once, from whichever panel has it."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    order = [name for name in BACKEND_CHOICES if name in entries]
    return [entries[name] for name in order], order
