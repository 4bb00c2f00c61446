"""`fastconv bench`: time every backend (and PyTorch, when installed) on layers of real networks.

Runs the benchmark suite shipped in fastconv.bench through pytest and pytest-benchmark in a child process, one
progress line per benchmark, then prints a table per shape (time, ratio to the fastest, GFLOP/s or GB/s, % of the
sgemm peak measured in the same run, peak memory of one call, auto's choice) and a summary against torch and im2col.

With --nets it runs every distinct conv and pool layer of whole networks (LeNet-5, and torchvision's AlexNet,
VGG-16, ResNet-18 and MobileNetV2 at 224x224) at the --batch sizes: conv forward and forward+backward, pooling
forward+backward, auto against torch. It prints a table per network and batch, then per network, batch and pass
the geometric mean of auto / torch over the network's distinct layers, the share of layers where auto <= torch,
the worst layer, and the whole network's ratio (each layer weighted by how often it occurs); without torch, auto's
own times and GFLOP/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from fastconv.bench import report
from fastconv.bench.cases import (BACKEND_CHOICES, DTYPE_CHOICES, NETWORK_BACKENDS, NETWORK_CHOICES, network_backends,
                                  select_backends, select_cases, select_dtypes, select_layouts, select_networks)
from fastconv.bench.networks import NETWORKS, ConvLayer
from fastconv.bench.ops import OPS
from fastconv.bench.shapes import QUICK_SHAPES, SHAPES, SMALL_SHAPES

#: pytest-benchmark timing per benchmark: quick keeps the whole run under two minutes on two cores
TIMING = {"quick": ["--benchmark-max-time=0.2", "--benchmark-min-rounds=3"],
          "full": ["--benchmark-max-time=1.0", "--benchmark-min-rounds=5"]}

#: a full `--nets all --batch 1,8` run on two cores, estimated rather than measured: 516 benchmarks (auto and torch)
#: at the 1.1 s each that a timed `--nets lenet --batch 1` run takes, plus the largest layers' five rounds and auto's
#: first measurements of each layer
FULL_NETWORK_RUN = "about 15 minutes"

EXAMPLES = f"""examples:
  fastconv bench --quick --json out.json --plot out.png
  fastconv bench --nets resnet18,mobilenet_v2 --batch 1,8   # every layer, auto vs torch, per-network summary
  fastconv bench --nets all --json nets.json                # all 5 networks at batch 1 and 8: {FULL_NETWORK_RUN}
  fastconv bench --from-json nets.json                      # the network tables and summary again
  fastconv bench --list --nets resnet18                     # the layers of a network
  fastconv bench --ops conv_fwd --shapes resnet_3x3,vgg_3x3 --backends numba,cython,torch
  fastconv bench --from-json out.json --plot again.png      # tables and plot of a saved run
  fastconv bench --list                                     # shapes and ops
  pytest benchmarks/ --fc-quick                             # the same suite from a source checkout
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("bench", help="benchmark every backend (and torch) on real-network layers",
                                   description=__doc__, epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"the quick subset ({', '.join(QUICK_SHAPES)}) with shorter timing: under 2 minutes "
                        "(with --nets: the shorter timing only)")
    parser.add_argument("--ops", metavar="LIST", help=f"conv, pool, or op names: {', '.join(OPS)} (default: all)")
    parser.add_argument("--shapes", metavar="LIST", help="shape names (see --list; default: all, or the quick set)")
    parser.add_argument("--nets", metavar="LIST", help=f"every distinct layer of these networks, among "
                        f"{', '.join(NETWORK_CHOICES)}, instead of the named shapes (add --shapes for both); "
                        f"backends {' and '.join(NETWORK_BACKENDS)} plus --backends. A full --nets all --batch 1,8 "
                        f"run takes {FULL_NETWORK_RUN} on two cores (estimated)")
    parser.add_argument("--batch", metavar="LIST", help="batch sizes for --nets (default: 1,8)")
    parser.add_argument("--backends", metavar="LIST", help=f"among {', '.join(BACKEND_CHOICES)} (default: all; "
                        "those that cannot run here, or torch when not installed, show as skipped)")
    parser.add_argument("--dtypes", metavar="LIST", help=f"among {', '.join(DTYPE_CHOICES)} (default: float32)")
    parser.add_argument("--layouts", metavar="LIST", help="data_format NCHW and/or NHWC (default: NCHW); NHWC rows "
                        "appear as '<backend> NHWC' columns beside the NCHW ones")
    parser.add_argument("--threads", type=int, metavar="N", help="threads for fastconv and torch "
                        "(default: fastconv.get_num_threads(), all cores)")
    parser.add_argument("--json", metavar="FILE", help="save the pytest-benchmark JSON (all timings, extra_info "
                        "and a 'fastconv' section) here")
    parser.add_argument("--plot", metavar="FILE", help="draw a grouped bar chart (PNG, SVG, PDF) of the times")
    parser.add_argument("--from-json", metavar="FILE", help="print the tables (and --plot) of a saved run "
                        "instead of running")
    parser.add_argument("--pytest-args", metavar="ARGS", default="",
                        help="more arguments for pytest, with '=': --pytest-args='--benchmark-min-rounds=10 -x'")
    parser.add_argument("--list", action="store_true", help="list the shapes, networks and ops (with --nets: "
                        "those networks' layers), then exit")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        _check(args)
    except ValueError as exc:
        print(f"fastconv bench: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print(_listing(args.nets))
        return 0
    if args.from_json:
        return _show(report.load(args.from_json), args.plot)
    missing = [name for name in ("pytest", "pytest_benchmark") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"fastconv bench: needs {' and '.join(missing)} (not installed); "
              f"install them with: pip install 'fastconv[bench]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        json_path = args.json or os.path.join(scratch, "bench.json")
        command = _pytest_command(args, json_path)
        print("running:", shlex.join(command), flush=True)
        code = subprocess.call(command)
        if not Path(json_path).exists():
            print("fastconv bench: no benchmark ran (every selected one was skipped or failed)", file=sys.stderr)
            return code or 1
        shown = _show(report.load(json_path), args.plot)
    if args.json:
        print(f"JSON: {args.json}")
    return code or shown


def _check(args: argparse.Namespace) -> None:
    """ValueError naming what is wrong with the selection options."""
    if args.batch and not args.nets:
        raise ValueError("--batch sets the batch sizes of --nets; add --nets (e.g. --nets resnet18)")
    select_cases(args.ops, args.shapes, args.quick, args.nets, args.batch)
    select_backends(args.backends)
    select_dtypes(args.dtypes)
    select_layouts(args.layouts)


def _pytest_command(args: argparse.Namespace, json_path: str) -> list[str]:
    suite = importlib.util.find_spec("fastconv.bench.suite").origin
    command = [sys.executable, "-m", "pytest", suite, "-p", "fastconv.bench.plugin", "-p", "no:cacheprovider",
               "-q", "--no-header", "-rfE", "--fc-progress", "--benchmark-quiet", f"--benchmark-json={json_path}",
               *TIMING["quick" if args.quick else "full"]]
    backends = ",".join(network_backends(args.backends)) if args.nets else args.backends
    options = {"--fc-ops": args.ops, "--fc-shapes": args.shapes, "--fc-nets": args.nets, "--fc-batch": args.batch,
               "--fc-backends": backends, "--fc-dtypes": args.dtypes, "--fc-layouts": args.layouts,
               "--fc-threads": args.threads}
    command += [f"{flag}={value}" for flag, value in options.items() if value]
    if args.quick and not args.nets:
        command.append("--fc-quick")
    return command + shlex.split(args.pytest_args)


def _show(results: report.Results, plot_path: str | None) -> int:
    if not results.rows:
        print("fastconv bench: the JSON holds no benchmark", file=sys.stderr)
        return 1
    shapes, nets = results.per_shape(), results.per_network()
    print()
    print(report.format_machine(results))
    if shapes.rows:
        _show_shapes(shapes)
    if nets.rows:
        _show_networks(nets)
    skips = report.format_skips(results)
    if skips:
        print("\n" + skips)
    if plot_path:
        _plot(shapes, plot_path)
    return 0


def _show_shapes(results: report.Results) -> None:
    print()
    print(report.format_tables(results))
    print("\nSummary (min time in ms, fastest in bold; a ratio below 1 means auto is faster):\n")
    print(report.format_summary(results))


def _show_networks(results: report.Results) -> None:
    print()
    print(report.format_network_tables(results))
    print("\nNetworks\n")
    print(report.format_network_summary(results))


def _plot(results: report.Results, path: str) -> None:
    if not results.rows:
        print("\nplot: not drawn, network runs are shown as tables only")
        return
    from fastconv.bench.plot import plot

    plot(results, path)
    print(f"\nplot: {path}")


def _listing(nets: str | None) -> str:
    lines = [f"shapes (* = in --quick; naive runs only on {', '.join(SMALL_SHAPES)}):"]
    lines += [f"  {'*' if name in QUICK_SHAPES else ' '} {name:<14} {shape.describe():<50} {shape.source}"
              for name, shape in SHAPES.items()]
    lines.append("networks (--nets; distinct layers, conv + pool):")
    lines += [f"  {name:<13} {len(layers)} = {_convs(layers)} + {len(layers) - _convs(layers)}"
              for name, layers in NETWORKS.items()]
    for name in select_networks(nets):
        lines.append(f"{name} (x = times the layer occurs):")
        lines += [f"  {layer.name:<40} {layer.describe():<44} x{layer.count}" for layer in NETWORKS[name]]
    lines.append("ops: conv (" + ", ".join(op for op in OPS if OPS[op].family == "conv") + "), pool ("
                 + ", ".join(op for op in OPS if OPS[op].family == "pool") + ")")
    return "\n".join(lines)


def _convs(layers) -> int:
    return sum(isinstance(layer, ConvLayer) for layer in layers)
