"""Conv forward and forward+backward on every conv shape and backend (the tests live in fastconv.bench.suite)."""

from fastconv.bench.suite import test_conv  # noqa: F401
