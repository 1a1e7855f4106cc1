"""cnnkern reference models."""
