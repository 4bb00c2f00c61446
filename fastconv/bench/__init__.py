"""The benchmark suite behind `fastconv bench`, shipped inside the package so that it runs from an installed wheel.

shapes  the named layer table (real networks) and the quick subset
networks  every distinct conv and pool layer of LeNet-5, AlexNet, VGG-16, ResNet-18 and MobileNetV2 (`--nets`)
ops     what one timed call does, per op, and the work it counts (flops or bytes)
torch_ref  the same calls in PyTorch (optional reference row)
peak    the machine's sgemm rate, measured in the same run
plugin  pytest options, parametrization, progress lines, extra JSON
suite   the pytest-benchmark tests (run by `fastconv bench` and by the thin modules in benchmarks/)
report  tables and the summaries (per shape, per network) from the JSON; plot draws the bar chart

Importing this package does not import pytest.
"""
