"""Compiled kernels of the cython backend (built by setup.py; see fastconv.backends.cython)."""
