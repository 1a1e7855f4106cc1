"""Reference models built from cnnkern layers (importable as cnnkern.models)."""

from .lenet import LeNet5, lenet5

__all__ = ["LeNet5", "lenet5"]
