"""Build script for the compiled parts of fastconv (the Cython backend lands here)."""

from setuptools import setup

setup()
