"""The benchmark suite and `fastconv bench`: shape table, network layer tables, selection, tiny real runs (named
shapes, and a network), tables, network summary, plot and errors.

The runs time a few tiny cases for one round each; speed itself is measured by `fastconv bench`, not here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastconv import cli
from fastconv.bench import report
from fastconv.bench.cases import case_named, network_backends, select_cases
from fastconv.bench.networks import LAYERS, NETWORKS, ConvLayer, PoolLayer, out_hw, shapes
from fastconv.bench.ops import OPS, work
from fastconv.bench.shapes import CONV_SHAPES, POOL_SHAPES, QUICK_SHAPES, SHAPES, SMALL_SHAPES

REPO = Path(__file__).resolve().parent.parent
TINY_TIMING = "--benchmark-max-time=0.001 --benchmark-min-rounds=1 --fc-sgemm-size=256"
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
               "--pytest-args", TINY_TIMING]
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


def test_layouts_time_nhwc_beside_nchw(tmp_path):
    """--layouts NCHW,NHWC times each case in both layouts: NHWC rows are '<backend> NHWC' columns, and torch's
    NHWC row is a visible skip."""
    json_path = tmp_path / "layouts.json"
    command = [sys.executable, "-m", "fastconv.cli", "bench", "--ops", "conv_fwd,avgpool_fwd_bwd",
               "--shapes", "lenet_c2_b1,lenet_pool_b1", "--backends", "im2col,torch", "--layouts", "NCHW,NHWC",
               "--json", str(json_path), "--pytest-args", TINY_TIMING]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| op | shape | im2col | im2col NHWC |" in done.stdout
    data = json.loads(json_path.read_text())
    layouts = {(b["extra_info"]["op"], b["extra_info"]["backend"]): b["extra_info"]["layout"] for b in data["benchmarks"]}
    assert layouts[("conv_fwd", "im2col NHWC")] == "NHWC" and layouts[("conv_fwd", "im2col")] == "NCHW"
    assert {"op": "conv_fwd", "shape": "lenet_c2_b1", "dtype": "float32", "backend": "torch NHWC",
            "reason": "the torch reference row runs NCHW only"} in data["fastconv"]["skipped"]


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
    assert "benchmarks/test_conv.py::test_conv[conv_fwd-resnet_3x3-float32-NCHW-im2col]" in ids


# network layer tables

#: per network: distinct conv and pool layers, then how many conv and pool layers the network runs
NETWORK_COUNTS = {"lenet": (3, 2, 3, 2), "alexnet": (5, 3, 5, 3), "vgg16": (9, 5, 13, 5), "resnet18": (11, 2, 20, 2),
                  "mobilenet_v2": (30, 1, 52, 1)}
#: the last layer's output (channels, h, w)
NETWORK_OUTPUTS = {"lenet": (120, 1, 1), "alexnet": (256, 6, 6), "vgg16": (512, 7, 7), "resnet18": (512, 1, 1),
                   "mobilenet_v2": (1280, 1, 1)}
SEQUENTIAL = ("lenet", "alexnet", "vgg16")


def _geometry(layer) -> tuple:
    """Everything of a layer but its names and count."""
    return (type(layer).__name__, getattr(layer, "mode", None), layer.in_channels, layer.out_channels, layer.kernel,
            layer.stride, layer.padding, getattr(layer, "groups", 1), layer.hw)


@pytest.mark.parametrize("network", NETWORKS)
def test_network_counts_its_distinct_layers_and_their_occurrences(network):
    layers = NETWORKS[network]
    convs = [layer for layer in layers if isinstance(layer, ConvLayer)]
    pools = [layer for layer in layers if isinstance(layer, PoolLayer)]
    assert (len(convs), len(pools), sum(layer.count for layer in convs),
            sum(layer.count for layer in pools)) == NETWORK_COUNTS[network]
    assert len({_geometry(layer) for layer in layers}) == len(layers)
    assert all(layer.network == network and layer.name.startswith(f"{network}.") for layer in layers)


def test_well_known_layers_have_their_architecture_geometry():
    def conv(name):
        layer = LAYERS[name]
        return (layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding, layer.groups,
                layer.hw, out_hw(layer), layer.count)

    assert conv("resnet18.conv1") == (3, 64, (7, 7), (2, 2), (3, 3), 1, (224, 224), (112, 112), 1)
    assert conv("resnet18.layer1.0.conv1") == (64, 64, (3, 3), (1, 1), (1, 1), 1, (56, 56), (56, 56), 4)
    assert conv("resnet18.layer2.0.conv1") == (64, 128, (3, 3), (2, 2), (1, 1), 1, (56, 56), (28, 28), 1)
    assert conv("resnet18.layer2.0.downsample.0") == (64, 128, (1, 1), (2, 2), (0, 0), 1, (56, 56), (28, 28), 1)
    assert conv("resnet18.layer4.0.conv2") == (512, 512, (3, 3), (1, 1), (1, 1), 1, (7, 7), (7, 7), 3)
    assert len([name for name in LAYERS if name.startswith("resnet18.") and "conv" in name]) == 8
    assert conv("mobilenet_v2.features.0.0") == (3, 32, (3, 3), (2, 2), (1, 1), 1, (224, 224), (112, 112), 1)
    assert conv("mobilenet_v2.features.2.conv.1.0") == (96, 96, (3, 3), (2, 2), (1, 1), 96, (112, 112), (56, 56), 1)
    assert conv("mobilenet_v2.features.3.conv.1.0") == (144, 144, (3, 3), (1, 1), (1, 1), 144, (56, 56), (56, 56), 1)
    assert conv("mobilenet_v2.features.8.conv.0.0") == (64, 384, (1, 1), (1, 1), (0, 0), 1, (14, 14), (14, 14), 4)
    assert conv("mobilenet_v2.features.18.0") == (320, 1280, (1, 1), (1, 1), (0, 0), 1, (7, 7), (7, 7), 1)
    assert conv("alexnet.features.0") == (3, 64, (11, 11), (4, 4), (2, 2), 1, (224, 224), (55, 55), 1)
    assert conv("alexnet.features.3") == (64, 192, (5, 5), (1, 1), (2, 2), 1, (27, 27), (27, 27), 1)
    assert conv("vgg16.features.24") == (512, 512, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14), 3)
    assert conv("lenet.conv1") == (1, 6, (5, 5), (1, 1), (2, 2), 1, (28, 28), (28, 28), 1)
    assert conv("lenet.conv2") == (6, 16, (5, 5), (1, 1), (0, 0), 1, (14, 14), (10, 10), 1)
    assert all(layer.kernel == (3, 3) and layer.padding == (1, 1) for layer in NETWORKS["vgg16"]
               if isinstance(layer, ConvLayer))
    assert {(layer.mode, layer.kernel, layer.stride) for layer in NETWORKS["vgg16"]
            if isinstance(layer, PoolLayer)} == {("max", (2, 2), (2, 2))}
    maxpool = LAYERS["resnet18.maxpool"]
    assert (maxpool.mode, maxpool.channels, maxpool.kernel, maxpool.stride, maxpool.padding, maxpool.hw,
            out_hw(maxpool)) == ("max", 64, (3, 3), (2, 2), (1, 1), (112, 112), (56, 56))


@pytest.mark.parametrize("network", NETWORKS)
def test_every_layer_is_a_valid_geometry_whose_input_an_earlier_layer_makes(network):
    """Each layer reads the network's input or a map an earlier layer wrote; in a plain chain, the previous one."""
    first = NETWORKS[network][0]
    made = [(first.in_channels, *first.hw)]
    for layer in NETWORKS[network]:
        g = layer.shape(2).geometry(np.float32)
        assert g.x_shape == (2, layer.in_channels, *layer.hw)
        assert g.y_shape == (2, layer.out_channels, *out_hw(layer))
        source = (layer.in_channels, *layer.hw)
        assert source in made, layer.name
        if network in SEQUENTIAL:
            assert source == made[-1], layer.name
        made.append((layer.out_channels, *out_hw(layer)))
    assert made[-1] == NETWORK_OUTPUTS[network]


def test_network_cases_pair_each_layer_with_its_ops_per_batch():
    cases = select_cases(None, None, nets="lenet", batches="1,8")
    assert [case.id for case in cases[:6]] == [
        "conv_fwd-lenet.conv1@b1", "conv_fwd_bwd-lenet.conv1@b1", "avgpool_fwd_bwd-lenet.pool1@b1",
        "conv_fwd-lenet.conv2@b1", "conv_fwd_bwd-lenet.conv2@b1", "avgpool_fwd_bwd-lenet.pool2@b1"]
    assert len(cases) == 2 * (2 * 3 + 2)
    assert cases[-1].network_info() == {"network": "lenet", "layer": "lenet.conv3", "count": 1, "batch": 8}
    assert len(select_cases(None, None, nets="all", batches="8")) == sum(
        2 * counts[0] + counts[1] for counts in NETWORK_COUNTS.values())
    assert {case.op.name for case in select_cases("conv_fwd,pool", None, nets="resnet18", batches="1")} == {
        "conv_fwd", "maxpool_fwd_bwd", "avgpool_fwd_bwd"}
    assert len(select_cases(None, "resnet_3x3", nets="lenet", batches="1")) == 2 + 8
    case = case_named("conv_fwd", "resnet18.layer2.0.conv1@b8")
    assert case.shape.x == (8, 64, 56, 56) and case.layer is LAYERS["resnet18.layer2.0.conv1"]
    assert [shape.name for shape in shapes("lenet", 4)][:2] == ["lenet.conv1@b4", "lenet.pool1@b4"]
    assert network_backends(None) == ["auto", "torch"] and network_backends("numba,auto") == [
        "numba", "auto", "torch"]


@pytest.mark.parametrize("selection, message", [
    (["--nets", "resnet"], "unknown network 'resnet'; valid: all, lenet, alexnet, vgg16, resnet18, mobilenet_v2"),
    (["--nets", "lenet", "--batch", "0,x"], "batch sizes are positive integers such as 1,8; got '0', 'x'"),
    (["--batch", "8"], "--batch sets the batch sizes of --nets"),
])
def test_network_options_are_checked_before_running(selection, message, capsys):
    assert cli.main(["bench", *selection]) == 2
    assert message in capsys.readouterr().err


def _net_rows(network, batch, op, times, backend="auto"):
    """report rows of one network's layers: times maps layer name -> (seconds, count)."""
    return [report.Row(op, f"{layer}@b{batch}", "float32", backend, seconds, flops=10**9 if "conv" in op else None,
                       bytes=None if "conv" in op else 10**6, network=network, layer=layer, batch=batch, count=count)
            for layer, (seconds, count) in times.items()]


def test_network_summary_geomean_share_worst_and_whole_network():
    names = ("resnet18.conv1", "resnet18.layer1.0.conv1", "resnet18.layer2.0.conv1")
    auto = dict(zip(names, [(0.004, 1), (0.001, 4), (0.003, 1)]))
    torch = dict(zip(names, [(0.002, 1), (0.002, 4), (0.003, 1)]))
    rows = _net_rows("resnet18", 8, "conv_fwd", auto) + _net_rows("resnet18", 8, "conv_fwd", torch, "torch")
    rows += _net_rows("lenet", 8, "conv_fwd", {"lenet.conv1": (0.001, 1)})
    rows += _net_rows("lenet", 8, "conv_fwd", {"lenet.conv1": (0.004, 1)}, "torch")
    lenet, resnet, overall = report.network_summaries(report.Results(rows, {"torch": "2.13.0"}))
    assert (resnet.network, resnet.batch, resnet.pass_name) == ("resnet18", 8, "fwd") and lenet.geomean == 0.25
    assert resnet.geomean == pytest.approx((2.0 * 0.5 * 1.0) ** (1 / 3))
    assert resnet.at_or_under == 2 and resnet.share_at_or_under == pytest.approx(2 / 3)
    assert (resnet.worst.name, resnet.worst.ratio) == ("resnet18.conv1", 2.0)
    assert resnet.network_ratio == pytest.approx((0.004 + 4 * 0.001 + 0.003) / (0.002 + 4 * 0.002 + 0.003))
    assert overall.network == "all" and len(overall.layers) == 4
    assert overall.geomean == pytest.approx((2.0 * 0.5 * 1.0 * 0.25) ** (1 / 4))
    table = report.format_network_summary(report.Results(rows, {"torch": "2.13.0"}))
    assert "| resnet18 | 8 | fwd | 3 | 1.00 | 67% (2/3) | resnet18.conv1 2.00 | 0.85 |" in table
    assert "| all | 8 | fwd | 4 | 0.71 | 75% (3/4) | resnet18.conv1 2.00 | 0.71 |" in table


def test_network_summary_without_torch_shows_auto_times_and_rates():
    rows = _net_rows("lenet", 1, "conv_fwd_bwd", {"lenet.conv1": (0.002, 1), "lenet.conv2": (0.001, 2)})
    rows += _net_rows("lenet", 1, "avgpool_fwd_bwd", {"lenet.pool1": (0.001, 1)})
    (summary,) = report.network_summaries(report.Results(rows, {}))
    assert summary.pass_name == "fwd+bwd" and summary.seconds == pytest.approx(0.005)
    assert summary.gflops == pytest.approx(3e9 / 0.004 / 1e9)  # count-weighted: conv2 runs twice
    assert summary.slowest.name == "lenet.conv1"
    text = report.format_network_summary(report.Results(rows, {"torch": None}))
    assert "torch is not installed here" in text
    assert "| lenet | 1 | fwd+bwd | 3 | 5.000 | 750.0 | lenet.conv1 500.0 |" in text


@pytest.fixture(scope="module")
def network_run(tmp_path_factory):
    """One real `fastconv bench --nets lenet --batch 1 --backends numba` run, one round each: (stdout, JSON)."""
    json_path = tmp_path_factory.mktemp("nets") / "nets.json"
    command = [sys.executable, "-m", "fastconv.cli", "bench", "--nets", "lenet", "--batch", "1", "--backends",
               "numba", "--json", str(json_path), "--pytest-args", TINY_TIMING]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json_path


def test_network_run_prints_layer_tables_and_the_summary(network_run):
    stdout, _ = network_run
    assert "--fc-nets=lenet --fc-batch=1 --fc-backends=numba,auto,torch" in stdout
    assert "] avgpool_fwd_bwd lenet.pool1@b1 float32 auto ... " in stdout
    assert "lenet, batch 1 (ms per call; count: times the layer occurs)" in stdout
    assert "| lenet.conv2 | conv_fwd | 6->16 5x5 @14x14 | 1 | " in stdout
    assert "\nNetworks\n" in stdout
    summary_head = ("| network | batch | pass | layers | geomean auto / torch |" if importlib.util.find_spec("torch")
                    else "torch is not installed here")
    assert summary_head in stdout
    assert "| lenet | 1 | fwd+bwd | 5 |" in stdout


def test_network_json_holds_the_layer_records_and_reprints_the_summary(network_run, capsys):
    stdout, json_path = network_run
    records = [bench["extra_info"] for bench in json.loads(json_path.read_text())["benchmarks"]]
    pool = next(info for info in records if info["layer"] == "lenet.pool2" and info["backend"] == "numba")
    assert (pool["network"], pool["count"], pool["batch"], pool["op"]) == ("lenet", 1, 1, "avgpool_fwd_bwd")
    assert {info["layer"] for info in records} == {layer.name for layer in NETWORKS["lenet"]}
    assert cli.main(["bench", "--from-json", str(json_path)]) == 0
    reprinted = capsys.readouterr().out
    assert reprinted.split("\nNetworks\n")[1] in stdout


def test_auto_is_warmed_up_until_it_has_decided(tmp_path, monkeypatch):
    """auto measures a bucket on its MEASURE_ON_VISIT-th call: the suite's warm-up calls it until every kernel of
    the case is decided, so that the timed rounds run auto's choice, not the heuristic's (labelled '?')."""
    from fastconv.backends import auto
    from fastconv.bench import suite
    from fastconv.bench.ops import fastconv_call, inputs

    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    monkeypatch.setattr(auto, "MEASURE_ON_VISIT", 3)  # the real 16 would only make the test slower
    auto.clear_memory()
    case = case_named("conv_fwd_bwd", "mnist_5x5")
    assert auto.expected_seconds("conv2d_forward", case.shape.geometry("float32")) >= auto.TINY_S  # measured
    call = fastconv_call(case.op, case.shape, inputs(case.op, case.shape, "float32"), "auto", "NCHW")
    assert "?" in suite._auto_kernels(case, "float32", "NCHW")
    suite._warm_up(call, case, "float32", "NCHW", "auto")
    label = suite._auto_kernels(case, "float32", "NCHW")
    assert "?" not in label and label.startswith("fwd=") and " bwd=" in label, label
