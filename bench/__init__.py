"""cnnkern benchmark suite."""
