"""`cnnkern check`: a reference model on cnnkern layers against its plain-torch twin.

The twin is the same constructor with backend="torch" (cuDNN on the GPU, oneDNN on the CPU),
loaded with the same weights. Both run the same batch in eval and in train mode (same seed,
so dropout draws the same masks), and we report the error of every layer's output, of the
model's output, the top-1 agreement, and the error of every parameter's gradient after one
backward pass of a cross-entropy loss.

Gradients are ill-conditioned in two ways: through BatchNorm in train mode (batch means of
nearly equal numbers are subtracted), and at ReLU kinks (an activation within rounding of 0
takes the other branch in float32: one such flip moves every gradient upstream of it). So a
float32 gradient can be off by percents from *any* float32 implementation. Gradients are
therefore judged against a float64 run of the twin, ours and torch's float32 errors side by
side (flash-attention's rule), per parameter (max-norm) and over all parameters (L2), the
latter being the robust one: a kernel bug moves it to O(1), a kink flip does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

import cnnkern
from cnnkern import nn as cnn
from cnnkern.tools.console import add_row, render, table

DEFAULT_INPUT = {"lenet5": (1, 32, 32)}


def input_shape(model_name: str, size: Optional[int] = None):
    c, h, w = DEFAULT_INPUT.get(model_name, (3, 224, 224))
    return (c, size or h, size or w)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30)).item()


def _abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def set_algo(model: nn.Module, algo: str) -> Dict[str, str]:
    """Sets `algo` on every cnnkern conv that can run it, "auto" on the others.

    Returns {layer name: what it will run} so the report says which layers fell back.
    Whether a layer can run an algorithm depends on its input size, so this installs a
    one-shot pre-hook that decides on the first forward.
    """
    plan: Dict[str, str] = {}
    for name, m in model.named_modules():
        if isinstance(m, (cnn.Conv2d,)):
            def decide(mod, args, name=name):
                ok, why = cnnkern.can_implement(args[0], mod.weight, mod.bias, mod.stride,
                                                mod.padding, mod.dilation, mod.groups,
                                                algo=algo)
                mod.algo = algo if ok or algo == "auto" else "auto"
                plan[name] = algo if mod.algo == algo else f"auto ({why})"
                mod._cnnkern_check_hook.remove()
            m._cnnkern_check_hook = m.register_forward_pre_hook(decide)
    return plan


@dataclass
class LayerError:
    name: str
    kind: str
    max_abs: float
    max_rel: float


@dataclass
class CheckResult:
    model: str
    algo: str
    mode: str
    device: str
    out_max_abs: float          # ours vs the float32 twin
    out_max_rel: float
    top1_agreement: float
    grad_max_rel: float         # worst parameter gradient, ours vs the float64 twin
    worst_grad: str
    torch_grad_max_rel: float   # the float32 twin's worst gradient error
    grad_l2_rel: float = 0.0    # all gradients as one vector, L2 relative error: ours ...
    torch_grad_l2_rel: float = 0.0  # ... and the float32 twin's
    out_rel_fp64: float = 0.0   # output vs the float64 twin: ours ...
    torch_out_rel_fp64: float = 0.0  # ... and the float32 twin's
    layers: List[LayerError] = field(default_factory=list)
    plan: Dict[str, str] = field(default_factory=dict)


def _record_outputs(model: nn.Module, store: Dict[str, torch.Tensor]):
    handles = []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            def hook(mod, args, out, name=name):
                if isinstance(out, torch.Tensor):
                    store[name] = out.detach().clone()
            handles.append(m.register_forward_hook(hook))
    return handles


def _run(model, x, labels, mode, seed):
    model.train(mode == "train")
    store: Dict[str, torch.Tensor] = {}
    handles = _record_outputs(model, store)
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    out = model(x)
    F.cross_entropy(_logits(out), labels).backward()
    for h in handles:
        h.remove()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), store, grads


def check_model(model_name: str, algo: str = "auto", device: str = "cpu", batch: int = 2,
                size: Optional[int] = None, modes=("eval", "train"), seed: int = 0,
                model_kwargs: Optional[dict] = None) -> List[CheckResult]:
    """Runs the check for one algorithm; returns one CheckResult per mode."""
    build = cnnkern.models.MODELS[model_name]
    kwargs = dict(model_kwargs or {})
    torch.manual_seed(seed)
    ours = build(backend="cnnkern", **kwargs).to(device)
    twin = build(backend="torch", **kwargs).to(device)
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    plan = set_algo(ours, algo)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, *input_shape(model_name, size), generator=gen).to(device)
    labels = (torch.arange(batch) % 2).to(device)  # valid for any class count >= 2
    ref64 = build(backend="torch", **kwargs).to(device).double()
    results = []
    for mode in modes:
        for m in (ours, twin, ref64):
            m.load_state_dict(state)
        out, acts, grads = _run(ours, x, labels, mode, seed)
        ref, ref_acts, ref_grads = _run(twin, x, labels, mode, seed)
        exact, _, exact_grads = _run(ref64, x.double(), labels, mode, seed)
        modules = dict(ours.named_modules())
        layers = [LayerError(n, type(modules[n]).__name__, _abs(a, ref_acts[n]), _rel(a, ref_acts[n]))
                  for n, a in acts.items() if n in ref_acts and a.shape == ref_acts[n].shape]
        ours_err, torch_err = _grad_errors(grads, exact_grads), _grad_errors(ref_grads, exact_grads)
        worst = max(ours_err, key=ours_err.get)
        top1 = _logits(out).argmax(1)
        results.append(CheckResult(
            model_name, algo, mode, device, _abs(out, ref), _rel(out, ref),
            (top1 == _logits(ref).argmax(1)).float().mean().item(), ours_err[worst], worst,
            max(torch_err.values()), _l2_rel(grads, exact_grads), _l2_rel(ref_grads, exact_grads),
            _rel(out, exact), _rel(ref, exact), layers, dict(plan)))
    return results


def _l2_rel(grads: Dict[str, torch.Tensor], exact: Dict[str, torch.Tensor]) -> float:
    names = sorted(exact)
    got = torch.cat([grads[n].double().flatten() for n in names])
    ref = torch.cat([exact[n].flatten() for n in names])
    return ((got - ref).norm() / ref.norm().clamp(min=1e-30)).item()


def _logits(out: torch.Tensor) -> torch.Tensor:
    return out.flatten(2).mean(-1) if out.dim() > 2 else out  # per-pixel scores -> per image


def _grad_errors(grads: Dict[str, torch.Tensor], exact: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Each gradient's max error relative to its own scale, but never to less than 1e-3 of the
    largest gradient: a parameter whose gradient is ~0 (a bias before a BatchNorm) would
    otherwise report rounding noise as a 100% error."""
    floor = 1e-3 * max(g.abs().max().item() for g in exact.values())
    return {n: _abs(g, exact[n]) / max(exact[n].abs().max().item(), floor, 1e-30)
            for n, g in grads.items()}


def time_model(model_name: str, algo: str, backend: str, device: str, batch: int,
               size: Optional[int], train: bool, repeats: int = 3) -> float:
    """Median seconds of a forward (eval) or a forward+backward+SGD step (train). Layers that
    `algo` cannot run run "auto", as in check_model (set_algo)."""
    model = cnnkern.models.MODELS[model_name](backend=backend).to(device)
    if backend == "cnnkern":
        set_algo(model, algo)
    x = torch.randn(batch, *input_shape(model_name, size), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        if train:
            model.train()
            opt.zero_grad(set_to_none=True)
            out = model(x)
            (out.float().pow(2).mean()).backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def _pair(ours: float, theirs: float) -> str:
    return f"{ours:.1e} / {theirs:.1e}"


def format_results(results: List[CheckResult], per_layer: bool = True) -> str:
    """The results of one model and algorithm: a line per mode against the float32 twin and
    the float64 one, the layers that ran "auto" instead, and each layer's error per mode."""
    if not results:
        return ""
    first = results[0]
    t = table(["mode", "output\nmax abs", "output\nmax rel", "top-1\nagree",
               "output vs fp64\nours / torch", "grads L2 vs fp64\nours / torch",
               "worst grad vs fp64\nours / torch", "worst grad\nat"],
              right=["output\nmax abs", "output\nmax rel", "top-1\nagree"],
              wrap=["worst grad\nat"],
              title=f"{first.model} | algo {first.algo} | {first.device}: against the torch twin "
                    f"(float32) and a float64 twin")
    for r in results:
        add_row(t, [r.mode, f"{r.out_max_abs:.2e}", f"{r.out_max_rel:.2e}",
                    f"{r.top1_agreement:.0%}", _pair(r.out_rel_fp64, r.torch_out_rel_fp64),
                    _pair(r.grad_l2_rel, r.torch_grad_l2_rel),
                    _pair(r.grad_max_rel, r.torch_grad_max_rel), r.worst_grad])
    items: list = [t]
    fallbacks = {n: p for n, p in first.plan.items() if p != first.algo}
    if fallbacks and first.algo != "auto":
        items.append(f"{len(fallbacks)} of {len(first.plan)} convs ran auto instead: " +
                     "; ".join(f"{n}: {p}" for n, p in list(fallbacks.items())[:3]) +
                     (" ..." if len(fallbacks) > 3 else ""))
    if per_layer:
        items.append(_layer_table(results))
    return render(*items)


def _layer_table(results: List[CheckResult]):
    """Each layer's output against the twin's: max abs and max rel per mode."""
    columns = ["layer", "kind"]
    for r in results:
        columns += [f"{r.mode}\nmax abs", f"{r.mode}\nmax rel"]
    t = table(columns, right=columns[2:], wrap=["layer"])
    by_mode = [{e.name: e for e in r.layers} for r in results]
    for e in results[0].layers:
        cells = [e.name, e.kind]
        for errors in by_mode:
            mine = errors.get(e.name)
            cells += [f"{mine.max_abs:.2e}", f"{mine.max_rel:.2e}"] if mine else ["", ""]
        add_row(t, cells)
    return t
