"""A process-wide on/off setting that `with` blocks override per thread: the scheme behind
cnnkern.autotune()/autotuning() and cnnkern.backends.allow_tf32/tf32()."""

from __future__ import annotations

import threading


class ThreadSwitch:
    """One bool for the process (set under a lock) and a stack of per-thread overrides, so
    concurrent threads with their own blocks never see each other's setting."""

    def __init__(self, default: bool):
        self._value = default
        self._lock = threading.Lock()
        self._local = threading.local()

    def set(self, enabled: bool) -> None:
        with self._lock:
            self._value = enabled

    def get(self) -> bool:
        """The value for the calling thread: its innermost block's, else the process's."""
        stack = getattr(self._local, "stack", None)
        return stack[-1] if stack else self._value

    def push(self, enabled: bool) -> None:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(enabled)

    def pop(self) -> None:
        self._local.stack.pop()


class ThreadOverride:
    """Base of the `with X(enabled):` blocks: `switch` is the ThreadSwitch a subclass sets for
    this thread inside the block (re-entrant and nestable)."""

    switch: ThreadSwitch

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self.switch.push(self.enabled)
        return self

    def __exit__(self, *exc):
        self.switch.pop()
        return False
