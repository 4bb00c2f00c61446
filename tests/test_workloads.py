"""The auto workloads of fastconv.bench.workloads: their operands and their table (timing them is a benchmark)."""

from __future__ import annotations

from fastconv.bench import workloads
from fastconv.bench.networks import NETWORKS, ConvLayer


def test_network_operands_are_drawn_once_per_distinct_layer():
    operands = workloads._network_operands("lenet", 2)
    assert [layer for layer, _, _ in operands] == list(NETWORKS["lenet"])
    for layer, x, w in operands:
        shape = layer.shape(2)
        assert x.shape == shape.x and x.dtype == "float32"
        assert (w.shape == shape.w) if isinstance(layer, ConvLayer) else w is None
    assert workloads._network_operands("lenet", 2) is operands  # cached: the timed runs do not draw


def test_network_forward_runs_every_layer(monkeypatch):
    calls = []
    for name in ("conv2d", "max_pool2d", "avg_pool2d"):
        monkeypatch.setattr(workloads.fc, name, lambda *args, _name=name, **kwargs: calls.append(_name))
    workloads.network_forward("im2col", "resnet18", 1)
    assert len(calls) == sum(layer.count for layer in NETWORKS["resnet18"])


def test_table_gives_auto_over_the_best_fixed_backend():
    results = {"w": {"cython": 2.0, "numba": 1.0, "auto fresh": 1.2, "auto warm": 0.9}}
    row = workloads.table(results).splitlines()[-1]
    assert row == "| w | 2.000 | 1.000 | 1.200 | 0.900 | 1.20 | 0.90 |"
