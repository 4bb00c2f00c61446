"""Max and avg pooling forward+backward on every pool shape and backend (the tests live in fastconv.bench.suite)."""

from fastconv.bench.suite import test_pool  # noqa: F401
