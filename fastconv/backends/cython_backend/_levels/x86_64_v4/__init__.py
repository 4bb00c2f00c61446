"""The hot kernel modules compiled with -march=x86-64-v4 by a portable build (empty in a source build). Importing
this package on a CPU without x86-64-v4 is an ImportError: its modules would stop on an illegal instruction."""

from fastconv.backends.cython_backend._levels import require

require("x86-64-v4")
