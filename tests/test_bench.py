"""The benchmark suite and `fastconv bench`: shape table, selection, a tiny real run, tables, plot and errors.

The run times a few tiny cases for one round each; speed itself is measured by `fastconv bench`, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastconv import cli
from fastconv.bench import report
from fastconv.bench.cases import select_cases
from fastconv.bench.ops import OPS, work
from fastconv.bench.shapes import CONV_SHAPES, POOL_SHAPES, QUICK_SHAPES, SHAPES, SMALL_SHAPES

REPO = Path(__file__).resolve().parent.parent
ISSUE_SHAPES = ("mnist_5x5", "lenet_c2", "resnet_3x3", "vgg_3x3", "alexnet_c1", "pointwise", "depthwise",
                "resnet_down", "resnet_stem", "pool_2x2")


def test_shape_table_builds_every_geometry():
    assert len(SHAPES) == len(CONV_SHAPES) + len(POOL_SHAPES)
    assert set(ISSUE_SHAPES) <= set(SHAPES) and set(QUICK_SHAPES) <= set(SHAPES)
    for shape in SHAPES.values():
        g = shape.geometry(np.float32)
        assert g.x_shape == shape.x
    assert {type(SHAPES[name]) for name in SMALL_SHAPES} == {type(CONV_SHAPES[0]), type(POOL_SHAPES[0])}


def test_work_counts_forward_flops_and_backward_as_twice_forward():
    resnet = SHAPES["resnet_3x3"]
    forward = 2 * 8 * 64 * 56 * 56 * 64 * 3 * 3
    assert work(OPS["conv_fwd"], resnet, np.float32) == {"flops": forward}
    assert work(OPS["conv_fwd_bwd"], resnet, np.float32) == {"flops": 3 * forward}
    depthwise = SHAPES["depthwise"]
    assert work(OPS["conv_fwd"], depthwise, np.float32) == {"flops": 2 * 8 * 128 * 56 * 56 * 1 * 3 * 3}
    x_bytes, y_bytes = 8 * 64 * 112 * 112 * 4, 8 * 64 * 56 * 56 * 4
    assert work(OPS["avgpool_fwd_bwd"], SHAPES["pool_2x2"], np.float32) == {"bytes": 2 * x_bytes + 2 * y_bytes}


def test_selection_pairs_each_op_with_its_shape_family():
    cases = select_cases("conv_fwd,pool", "resnet_3x3,pool_2x2")
    assert [case.id for case in cases] == ["conv_fwd-resnet_3x3", "maxpool_fwd_bwd-pool_2x2",
                                           "avgpool_fwd_bwd-pool_2x2"]
    assert {case.shape.name for case in select_cases(None, None, quick=True)} == set(QUICK_SHAPES)
    with pytest.raises(ValueError, match="unknown shape 'resnet'; valid: mnist_5x5_b1"):
        select_cases(None, "resnet")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real `fastconv bench` run on tiny cases, one round each: (stdout, JSON path, plot path)."""
    out = tmp_path_factory.mktemp("bench")
    json_path, plot_path = out / "bench.json", out / "bench.png"
    command = [sys.executable, "-m", "fastconv.cli", "bench", "--ops", "conv_fwd,maxpool_fwd_bwd",
               "--shapes", "lenet_c2_b1,lenet_c2,lenet_pool_b1", "--backends", "naive,im2col",
               "--json", str(json_path), "--plot", str(plot_path),
               "--pytest-args", "--benchmark-max-time=0.001 --benchmark-min-rounds=1 --fc-sgemm-size=256"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json_path, plot_path


def test_bench_prints_progress_tables_and_skips(bench_run):
    stdout, _, _ = bench_run
    assert "[1/6] conv_fwd lenet_c2_b1 float32 naive ... " in stdout
    assert "conv_fwd  lenet_c2_b1  x(1,6,14,14) w(16,6,5,5)  float32" in stdout
    assert "backend    time ms  vs best  GFLOP/s  % sgemm  peak MB" in stdout
    assert "| op | shape | naive | im2col |" in stdout
    assert "skipped 1x naive: naive (Python loops) runs only on the small shapes" in stdout


def test_bench_json_holds_extra_info_and_machine_section(bench_run):
    _, json_path, _ = bench_run
    data = json.loads(json_path.read_text())
    assert data["fastconv"]["sgemm_gflops"] > 0
    assert data["fastconv"]["skipped"] == [{"op": "conv_fwd", "shape": "lenet_c2", "dtype": "float32",
                                            "backend": "naive", "reason": data["fastconv"]["skipped"][0]["reason"]}]
    benchmarks = {(b["extra_info"]["op"], b["extra_info"]["shape"], b["extra_info"]["backend"]): b
                  for b in data["benchmarks"]}
    assert len(benchmarks) == 5
    conv = benchmarks["conv_fwd", "lenet_c2_b1", "im2col"]
    assert conv["group"] == "conv_fwd lenet_c2_b1 float32"
    assert conv["extra_info"]["flops"] == 2 * 16 * 10 * 10 * 6 * 5 * 5
    assert conv["extra_info"]["gflops"] > 0 and conv["extra_info"]["pct_sgemm"] > 0
    assert conv["extra_info"]["peak_bytes"] >= 16 * 10 * 10 * 4  # at least y
    pool = benchmarks["maxpool_fwd_bwd", "lenet_pool_b1", "naive"]
    assert pool["extra_info"]["gbytes_per_s"] > 0 and "flops" not in pool["extra_info"]


def test_bench_plot_is_a_png(bench_run):
    _, _, plot_path = bench_run
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_from_json_prints_the_saved_tables(bench_run, capsys):
    _, json_path, _ = bench_run
    assert cli.main(["bench", "--from-json", str(json_path)]) == 0
    stdout = capsys.readouterr().out
    assert "maxpool_fwd_bwd  lenet_pool_b1  x(1,6,28,28) 2x2 stride=2  float32" in stdout
    assert "sgemm peak measured in this run" in stdout


def test_summary_ratios_against_torch_and_im2col():
    rows = [report.Row("conv_fwd", "resnet_3x3", "float32", backend, seconds, flops=10**9)
            for backend, seconds in (("torch", 0.010), ("im2col", 0.020), ("auto", 0.005))]
    summary = report.format_summary(report.Results(rows, {}))
    assert "| op | shape | im2col | auto | torch | auto / torch | auto / im2col |" in summary
    assert "| conv_fwd | resnet_3x3 | 20.0 | **5.000** | 10.0 | 0.50 | 0.25 |" in summary
    assert "geometric mean of auto / torch over conv_fwd: 0.50 (1 batched shapes)" in summary


def test_unknown_names_and_missing_pytest_benchmark_are_clear_errors(monkeypatch, capsys):
    assert cli.main(["bench", "--backends", "numbaa"]) == 2
    assert "unknown backend 'numbaa'; valid: naive, im2col, numba, cython, auto, torch" in capsys.readouterr().err
    from fastconv.commands import bench

    real_find_spec = bench.importlib.util.find_spec
    monkeypatch.setattr(bench.importlib.util, "find_spec",
                        lambda name: None if name == "pytest_benchmark" else real_find_spec(name))
    assert cli.main(["bench", "--quick"]) == 2
    assert "needs pytest_benchmark (not installed)" in capsys.readouterr().err


@pytest.mark.skipif(not (REPO / "benchmarks").is_dir(), reason="benchmarks/ exists only in a source checkout")
def test_source_checkout_benchmarks_collect_the_packaged_suite():
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--collect-only", "-q", "--fc-quick",
                           "--fc-backends", "im2col,torch", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    quick_cases = select_cases(None, None, quick=True)
    assert len(ids) == 2 * len(quick_cases)
    assert "benchmarks/test_conv.py::test_conv[conv_fwd-resnet_3x3-float32-im2col]" in ids
