"""Sub-commands of the `fastconv` command line (see fastconv.cli)."""
