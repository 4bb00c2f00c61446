"""mkdocs hook: the site's name carries fastconv's version, read from fastconv/_version.py (the one place it is
written) without importing the package; where the docs are built beside an installed fastconv rather than its
sources (the wheel's test run), from the installed package's metadata."""

from __future__ import annotations

import runpy
from importlib import metadata
from pathlib import Path


def on_config(config):
    version_file = Path(config.config_file_path).parent / "fastconv" / "_version.py"
    version = runpy.run_path(str(version_file))["__version__"] if version_file.is_file() else metadata.version(
        "fastconv")
    config.site_name = f"{config.site_name} {version}"
    return config
