"""Run the packaged benchmark suite from a source checkout: `pytest benchmarks/ [--fc-quick] [--fc-backends ...]`,
or every layer of whole networks: `pytest benchmarks/ --fc-nets resnet18 --fc-batch 8 --fc-backends auto,torch`.

The tests live in fastconv/bench/suite.py so that `fastconv bench` also works from an installed wheel; the
modules here only import them, and the plugin below parametrizes them.
"""

pytest_plugins = ["fastconv.bench.plugin"]
