"""The engines the whole-model benchmark (bench/models.py) times, each a no-argument callable.

- eager torch and cnnkern (the same weights through `cnnkern.convert`): eval forward under
  torch.no_grad(), and a training step (zero the grads, forward, cross-entropy against fixed
  labels, backward: the same loss for both);
- torch.compile of the torch model (inductor; eval) and ONNX Runtime (eval), the engines a CPU
  user would pick instead. Both are optional: when one cannot run, `Engine.fn` is None and
  `Engine.note` says exactly why (what is not installed, the exception, the time limit).

The ONNX export uses torch's TorchScript exporter (`dynamo=False`): it needs only the `onnx`
package, where the dynamo exporter (torch's default since 2.9) also needs `onnxscript`; the
dynamo exporter is the fallback when the first fails and onnxscript is there.
"""

from __future__ import annotations

import importlib
import io
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

# torchvision builders and the arguments that make them build without downloads or warnings.
MODELS = {
    "resnet18": {}, "resnet50": {}, "mobilenet_v2": {}, "vgg16_bn": {},
    "googlenet": {"aux_logits": False, "init_weights": True},
    "shufflenet_v2_x1_0": {}, "resnext50_32x4d": {}, "densenet121": {},
}
DEFAULT_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "vgg16_bn", "googlenet"]


@dataclass
class Engine:
    name: str                          # "torch", "cnnkern", "torch.compile", "onnxruntime"
    fn: Optional[Callable[[], object]]  # None: skipped, `note` says why
    note: str = ""
    info: dict = field(default_factory=dict)  # e.g. compile seconds, export seconds


def build_model(name: str, seed: int = 0) -> nn.Module:
    """torchvision's `name` with random weights (weights=None: nothing is downloaded)."""
    import torchvision

    if name not in MODELS:
        raise ValueError(f"bench.models: unknown model {name!r}; choose from {', '.join(MODELS)}")
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, weights=None, **MODELS[name])


def calibrate_batch_norm(model: nn.Module, x: torch.Tensor) -> None:
    """Sets every BatchNorm's running statistics to those of one forward pass on x, as a
    trained model's would be. Freshly initialised ones (mean 0, variance 1) do not normalise:
    GoogLeNet's activations then shrink layer after layer into float32 denormals (its logits
    are its fc bias alone), and denormal arithmetic is many times slower on x86, which would
    time the CPU's denormal handling instead of the model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one pass, exactly that pass's stats
    model.train()
    with torch.no_grad():
        model(x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.train(was_training)


def eval_step(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    model.eval()

    def run():
        with torch.no_grad():
            return model(x)
    return run


def train_step(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Forward + backward of cross_entropy(model(x), labels); grads are reset (set to None)
    first, so no step pays for accumulating into the previous step's."""
    model.train()

    def run():
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        return loss.detach()
    return run


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


class _TimeLimit(BaseException):
    """Raised by the alarm in the middle of a compile; a BaseException so that no
    `except Exception` inside torch.compile swallows it."""


def _call_with_time_limit(fn: Callable[[], object], seconds: float) -> bool:
    """Calls fn(); returns False if it was interrupted after `seconds` (the main thread only:
    elsewhere there is no alarm and fn runs to the end)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        fn()
        return True
    fired = []

    def alarm(signum, frame):
        fired.append(True)
        raise _TimeLimit()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        fn()
    except BaseException:  # the alarm may arrive wrapped in whatever the compiler raises
        if fired:
            return False
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return True


def compiled_eval(model: nn.Module, x: torch.Tensor, time_limit: float) -> Engine:
    """torch.compile(model) (eval), compiled by its first call within `time_limit` seconds."""
    try:
        compiled = torch.compile(model)
        run = eval_step(compiled, x)
        start = time.perf_counter()
        if not _call_with_time_limit(run, time_limit):
            torch._dynamo.reset()
            return Engine("torch.compile", None,
                          f"torch.compile: compiling took over {time_limit:g} s "
                          f"(--compile-timeout); skipped")
        return Engine("torch.compile", run, info={"compile_s": time.perf_counter() - start})
    except Exception as e:  # noqa: BLE001  (any compiler failure is a note, not a failed run)
        torch._dynamo.reset()
        return Engine("torch.compile", None, f"torch.compile failed: {_first_line(e)}")


def _missing(module: str) -> bool:
    try:
        importlib.import_module(module)
        return False
    except ImportError:
        return True


def _export_onnx(model: nn.Module, x: torch.Tensor) -> bytes:
    """The model as ONNX bytes: the TorchScript exporter (needs onnx), else the dynamo one
    (needs onnxscript too)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        try:
            torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["input"],
                              output_names=["output"])
        except Exception as first:  # noqa: BLE001
            if _missing("onnxscript"):
                raise RuntimeError(f"torch.onnx.export(dynamo=False) failed ({_first_line(first)}) "
                                   f"and the dynamo exporter needs onnxscript, which is not "
                                   f"installed") from first
            buf = io.BytesIO()
            torch.onnx.export(model, (x,), buf, dynamo=True, input_names=["input"],
                              output_names=["output"])
    return buf.getvalue()


def onnxruntime_eval(model: nn.Module, x: torch.Tensor, threads: int) -> Engine:
    """ONNX Runtime's CPU provider on the exported model, `threads` intra-op threads."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return Engine("onnxruntime", None,
                      "ONNX Runtime: skipped, the onnxruntime package is not installed "
                      "(pip install onnxruntime)")
    if _missing("onnx"):
        return Engine("onnxruntime", None,
                      "ONNX Runtime: skipped, the onnx package is not installed "
                      "(torch.onnx.export needs it: pip install onnx)")
    model.eval()
    start = time.perf_counter()
    try:
        with torch.no_grad():
            data = _export_onnx(model, x)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        return Engine("onnxruntime", None, f"ONNX Runtime: skipped, {_first_line(e)}")
    feed = {session.get_inputs()[0].name: x.numpy()}

    def run():
        return torch.from_numpy(session.run(None, feed)[0])
    return Engine("onnxruntime", run, info={"export_s": time.perf_counter() - start,
                                            "onnxruntime": ort.__version__})
