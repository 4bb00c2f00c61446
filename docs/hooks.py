"""mkdocs hook: the site's name carries fastconv's version, read from fastconv/_version.py (the one place it is
written) without importing the package."""

from __future__ import annotations

import runpy
from pathlib import Path


def on_config(config):
    version_file = Path(config.config_file_path).parent / "fastconv" / "_version.py"
    config.site_name = f"{config.site_name} {runpy.run_path(str(version_file))['__version__']}"
    return config
