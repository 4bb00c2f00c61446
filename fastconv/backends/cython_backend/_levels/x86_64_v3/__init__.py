"""The hot kernel modules compiled with -march=x86-64-v3 by a portable build (empty in a source build)."""
