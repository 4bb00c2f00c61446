"""The cython kernels' instruction-set levels: what this CPU supports, which build runs, and that setup.py and the
loader agree on the levels and modules of a portable build."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import require_backend

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


@pytest.fixture(scope="module")
def levels():
    require_backend("cython")
    from fastconv.backends.cython_backend import _levels

    return _levels


def _setup_constant(name: str):
    """A literal assigned at the top level of setup.py."""
    for node in ast.parse(SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py assigns no {name}")


def test_setup_builds_the_levels_the_loader_looks_for(levels):
    assert tuple(_setup_constant("ADDED_LEVELS")) == levels.ADDED_LEVELS
    assert tuple(_setup_constant("HOT_MODULES")) == levels.HOT_MODULES
    assert _setup_constant("BASELINE_LEVEL") == next(iter(levels.LEVEL_FEATURES))
    for level in levels.ADDED_LEVELS:
        assert (Path(levels.__file__).parent / level.replace("-", "_") / "__init__.py").is_file()


def test_cpu_level_follows_the_features(levels):
    """Each level needs its own features and every lower level's."""
    import llvmlite.binding

    features = {name for name, on in llvmlite.binding.get_host_cpu_features().items() if on}
    level = levels.cpu_level()
    names = list(levels.LEVEL_FEATURES)
    reached = names[:names.index(level) + 1] if level else []
    for name in reached:
        assert features.issuperset(levels.LEVEL_FEATURES[name]), name
    if level != names[-1] and features.issuperset(levels.LEVEL_FEATURES[names[0]]):
        assert not features.issuperset(levels.LEVEL_FEATURES[names[len(reached)]])


def test_running_level_is_one_this_cpu_runs(levels):
    """A source build runs its native modules; a portable build runs an added level only if the CPU has it."""
    from fastconv.backends.cython_backend import _common

    level = levels.running_level()
    if level in levels.ADDED_LEVELS:
        names = list(levels.LEVEL_FEATURES)
        assert names.index(level) <= names.index(levels.cpu_level())
        assert levels.load("_gemm").__name__.endswith(f"{level.replace('-', '_')}._gemm")
    else:
        assert level == _common.build_target()
        assert levels.load("_gemm").__name__ == "fastconv.backends.cython_backend._gemm"
    assert level in levels.describe()


def test_importing_every_module_never_crashes(levels):
    """Tools that import every submodule (documentation builders, doctest collectors) get an ImportError for a
    level this CPU lacks, never an illegal instruction (a crash of the whole process)."""
    script = ("import importlib, pkgutil, fastconv\n"
              "for module in pkgutil.walk_packages(fastconv.__path__, 'fastconv.', onerror=lambda name: None):\n"
              "    try:\n"
              "        importlib.import_module(module.name)\n"
              "    except ImportError as exc:\n"
              "        print('refused', module.name, exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    for level in levels.ADDED_LEVELS:
        refused = f"refused fastconv.backends.cython_backend._levels.{level.replace('-', '_')} " in done.stdout
        assert refused != levels.supports(level), done.stdout


@pytest.mark.parametrize("bundled, user_policy, expected", [(True, None, "passive"), (True, "active", "active"),
                                                            (False, None, None)])
def test_a_wheel_with_its_own_openmp_runtime_lets_idle_threads_sleep(tmp_path, bundled, user_policy, expected):
    """Beside a bundled libgomp (fastconv.libs, as auditwheel repairs a wheel) the cython backend sets
    OMP_WAIT_POLICY=passive unless the user set it: two runtimes' spinning idle threads slowed each other."""
    import shutil

    import fastconv

    shutil.copytree(Path(fastconv.__file__).parent, tmp_path / "fastconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if bundled:
        (tmp_path / "fastconv.libs").mkdir()
        (tmp_path / "fastconv.libs" / "libgomp-0123abcd.so.1.0.0").touch()
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(tmp_path)
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    # the copy's extensions may not load (a wheel's look for its own libgomp beside them): the policy is set first
    code = ("import os, fastconv\nassert fastconv.__file__.startswith(os.environ['PYTHONPATH'])\n"
            "try:\n    import fastconv.backends.cython_backend\nexcept ImportError:\n    pass\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(expected)
