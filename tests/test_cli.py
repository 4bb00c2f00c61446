"""The `fastconv` command line: info, and the help of every sub-command."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fastconv
from fastconv import cli


def test_info_lists_every_backend_and_the_blas(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fastconv {fastconv.__version__}\n")
    for name in ("naive", "im2col", "numba", "cython", "auto"):
        assert f"  {name} " in out
    assert "threads:" in out and "thread pools" in out and "cython kernels compiled for: " in out


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: fastconv" in capsys.readouterr().out


def test_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "fastconv.cli", "info"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "backends:" in done.stdout
