"""The version of fastconv: written here only (pyproject.toml reads it, `fastconv info` prints it, the docs show it,
and CHANGELOG.md's top entry must name it)."""

__version__ = "0.2.0"
