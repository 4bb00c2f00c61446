"""Interchangeable kernel modules; see fastconv._backend for the interface every module implements."""
