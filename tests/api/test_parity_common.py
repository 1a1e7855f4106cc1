"""What the parity tests (tests/api/test_parity_*.py) share: running one call through torch and
through cnnkern, and judging the two. Each source of cases has its own file (PyTorch's OpInfo
samples and error inputs, its ModuleInfos, hypothesis, named edge cases); the tests here prove
the judges fail when they should.

The rule every case is held to:

- a call torch accepts, cnnkern accepts, with the same output (float64, to rounding; max-pool
  indices exactly) and the same gradients of every tensor argument that requires grad (input,
  weight, bias; a module's parameters), for one random grad_output;
- output and gradients laid out as torch lays them out: channels_last exactly when torch's
  are (torch: when the input or the weight is, for convolution; the input, for pooling);
- a call torch rejects, cnnkern rejects with a RuntimeError, ValueError or TypeError (or the
  type torch raised) whose message names cnnkern's function and the offending argument.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional, Tuple

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import assert_close, assert_exact

# torch.nn.functional name -> (torch's function, cnnkern's)
FUNCTIONS: Dict[str, Tuple[Callable, Callable]] = {
    "conv2d": (F.conv2d, cnnkern.conv2d),
    "conv_transpose2d": (F.conv_transpose2d, cnnkern.conv_transpose2d),
    "max_pool2d": (F.max_pool2d, cnnkern.max_pool2d),
    "avg_pool2d": (F.avg_pool2d, cnnkern.avg_pool2d),
    "adaptive_avg_pool2d": (F.adaptive_avg_pool2d, cnnkern.adaptive_avg_pool2d),
}

def torch_internal(module: str):
    """torch.testing._internal.<module>, without the global side effect of importing it:
    common_utils freezes torch.backends' flags (disable_global_flags) at import, after which
    every later test in the process that sets one (torch.backends.cudnn.allow_tf32 = ...)
    fails. The flags are unfrozen again if they were not frozen before."""
    was_frozen = torch.backends.flags_frozen()
    mod = importlib.import_module(f"torch.testing._internal.{module}")
    if not was_frozen:
        # The flag lives in the globals of torch.backends' functions (the module object is
        # wrapped, so setting it on torch.backends would not reach them).
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
        assert not torch.backends.flags_frozen()
    return mod


# ---------------------------------------------------------------------------------------------
# Running a call
# ---------------------------------------------------------------------------------------------

@dataclass
class Run:
    """What one side of a comparison gave: its outputs (a tuple; the first is the one
    differentiated) and the gradients of the named tensors that require grad."""

    outputs: Tuple[torch.Tensor, ...]
    grads: Dict[str, Optional[torch.Tensor]] = field(default_factory=dict)
    # torch's side: its run on the tensors as given, whose layouts are the reference, where the
    # values come from another run (run_function)
    layout: Optional["Run"] = None


def run(call: Callable, wrt: Dict[str, Optional[torch.Tensor]], seed: int = 0,
        reference: bool = False) -> Run:
    """call() and, where its first output requires grad, the gradients of the tensors in `wrt`
    that require grad, for a grad_output drawn from `seed` (the same on both sides).

    reference: torch's side. Its adaptive_avg_pool2d backward refuses an empty output
    ("Expected grad_output to have non-zero size"); the gradient of an empty output is zero,
    so there the gradients are left None (judged as zeros, their layout not judged)."""
    out = call()
    outputs = out if isinstance(out, tuple) else (out,)
    y = outputs[0]
    targets = {k: t for k, t in wrt.items() if isinstance(t, torch.Tensor) and t.requires_grad}
    grads = {}
    if targets and y.requires_grad:
        gen = torch.Generator().manual_seed(seed)
        g = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
        try:
            grads = dict(zip(targets, torch.autograd.grad(y, list(targets.values()), g,
                                                          allow_unused=True)))
        except RuntimeError:
            if not (reference and y.numel() == 0):
                raise
            grads = dict.fromkeys(targets)
    return Run(outputs, grads)


def tensors_of(args: Iterable, kwargs: dict, names=("input", "weight", "bias")) -> dict:
    """The tensor arguments of a functional call, by name (positional ones in F's order)."""
    named = dict(zip(names, args))
    named.update({k: v for k, v in kwargs.items() if k in names})
    return {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}


def _contiguous_copy(a):
    if not isinstance(a, torch.Tensor):
        return a
    return a.detach().contiguous().requires_grad_(a.requires_grad)


def run_function(name: str, args: tuple, kwargs: dict, seed: int = 0) -> Tuple[Run, Run]:
    """(torch's Run, cnnkern's Run) of F.<name>(*args, **kwargs) and cnnkern.<name>(...): the
    same tensors go to cnnkern (views included), which differentiates its own graph.

    torch's values come from contiguous copies of the tensors, its layouts (Run.layout) from
    the call as given: the math does not depend on the layout, but torch's kernels can get it
    wrong for some (torch 2.14, CPU: F.conv2d's weight gradient for an unbatched channels_last
    input with a channels_last weight and groups=2)."""
    ref_fn, ck_fn = FUNCTIONS[name]
    wrt = tensors_of(args, kwargs)
    c_args = tuple(_contiguous_copy(a) for a in args)
    c_kwargs = {k: _contiguous_copy(v) for k, v in kwargs.items()}
    ref = run(lambda: ref_fn(*c_args, **c_kwargs), tensors_of(c_args, c_kwargs), seed,
              reference=True)
    ref.layout = run(lambda: ref_fn(*args, **kwargs), wrt, seed, reference=True)
    return ref, run(lambda: ck_fn(*args, **kwargs), wrt, seed)


# ---------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------

def assert_same_values(ref: Run, got: Run, what: str = ""):
    """Outputs and gradients equal to rounding (float64 tolerances); integer outputs (max-pool
    indices) exactly. A gradient one side did not produce counts as zeros."""
    assert len(got.outputs) == len(ref.outputs), f"{what}: {len(got.outputs)} outputs, torch " \
                                                 f"{len(ref.outputs)}"
    for i, (o, r) in enumerate(zip(got.outputs, ref.outputs)):
        assert o.dtype == r.dtype, f"{what}: output {i} dtype {o.dtype}, torch {r.dtype}"
        if r.is_floating_point():
            assert_close(o, r, equal_nan=True, msg=f"{what}: output {i}")
        else:
            assert_exact(o, r)
    assert set(got.grads) == set(ref.grads), f"{what}: gradients of {sorted(got.grads)}, " \
                                             f"torch {sorted(ref.grads)}"
    for k, r in ref.grads.items():
        o = got.grads[k]
        if r is None and o is None:
            continue
        if r is None or o is None:
            present = o if r is None else r
            r, o = (torch.zeros_like(present), o) if r is None else (r, torch.zeros_like(r))
        assert_close(o, r, equal_nan=True, msg=f"{what}: gradient of {k}")


def _layout(t: torch.Tensor):
    """(contiguous, channels_last) of `t`; a 3-D (unbatched) tensor as its batch of one."""
    t4 = t.unsqueeze(0) if t.dim() == 3 else t
    channels_last = t4.dim() == 4 and t4.is_contiguous(memory_format=torch.channels_last)
    return t.is_contiguous(), channels_last


def assert_same_memory_format(ref: Run, got: Run, what: str = "", ignore=()):
    """The output and every gradient laid out as torch's: contiguous and channels_last
    exactly where torch's are (a tensor with size-1 dimensions can be both). `ignore`: names
    of gradients not judged (see mean_path_quirk)."""
    ref = ref.layout or ref
    pairs = [("output", got.outputs[0], ref.outputs[0])]
    pairs += [(f"gradient of {k}", got.grads.get(k), r) for k, r in ref.grads.items()
              if k not in ignore]
    for label, o, r in pairs:
        # An empty tensor holds nothing to lay out, and torch's strides for one can be anything
        # (an input gradient of (0, 1, 2, 1) came with strides (1, 0, 0, 0)).
        if o is None or r is None or r.numel() == 0:
            continue
        assert _layout(o) == _layout(r), (
            f"{what}: {label} is (contiguous, channels_last)={_layout(o)} with strides "
            f"{o.stride()}; torch's is {_layout(r)} with strides {r.stride()}")


def mean_path_quirk(name: str, output_size, input_shape) -> tuple:
    """The gradients whose layout torch does not choose by its rule in this call: torch computes
    adaptive_avg_pool2d to 1 x 1 as input.mean((-2, -1)), whose input gradient comes out
    contiguous whatever the input's layout (its output does follow the input). cnnkern's
    follows the input there too, as everywhere else; the one place rule and torch part."""
    if name != "adaptive_avg_pool2d":
        return ()
    size = [output_size] * 2 if isinstance(output_size, int) else list(output_size)
    size = [input_shape[i - 2] if s is None else s for i, s in enumerate(size)]
    return ("input",) if size == [1, 1] else ()


ACCEPTED_ERRORS = (RuntimeError, ValueError, TypeError)


def assert_rejected_like_torch(name: str, call_torch: Callable, call_ck: Callable,
                               arg_names: Iterable[str], what: str = ""):
    """torch rejects the call; cnnkern rejects it too, with a RuntimeError/ValueError/TypeError
    (or torch's own exception type), naming cnnkern.<name> and one of `arg_names` (the
    offending argument; several where a case breaks more than one rule)."""
    arg_names = list(arg_names)
    try:
        call_torch()
    except Exception as e:  # noqa: BLE001 (whatever torch raises is the reference)
        torch_error = e
    else:
        pytest.fail(f"{what}: torch accepted a case meant to be invalid (the generator is wrong)")
    try:
        call_ck()
    except (*ACCEPTED_ERRORS, type(torch_error)) as e:
        msg = str(e)
    else:
        pytest.fail(f"{what}: cnnkern.{name} accepted what torch rejects ({torch_error})")
    assert f"cnnkern.{name}" in msg, f"{what}: the message does not name cnnkern.{name}: {msg}"
    assert any(a in msg for a in arg_names), (
        f"{what}: the message names none of {arg_names}: {msg} (torch: {torch_error})")


# ---------------------------------------------------------------------------------------------
# The judges fail when they should
# ---------------------------------------------------------------------------------------------

def _x(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_values_judge_matches_torch_on_a_real_call():
    x, w = _x(2, 3, 5, 5), _x(4, 3, 3, 3)
    ref, got = run_function("conv2d", (x, w), dict(padding=1))
    assert set(ref.grads) == {"input", "weight"}
    assert_same_values(ref, got, "conv2d")


def test_values_judge_catches_a_wrong_output_and_a_wrong_gradient():
    x = _x(1, 2, 4, 4)
    ref = run(lambda: F.avg_pool2d(x, 2), {"input": x})
    off = run(lambda: F.avg_pool2d(x, 2) * (1 + 1e-6), {"input": x})
    with pytest.raises(AssertionError, match="output 0"):
        assert_same_values(ref, off)
    # the same output, but a gradient through another path: only the gradient differs
    detour = run(lambda: F.avg_pool2d(x, 2).detach() + (x * 0).sum(), {"input": x})
    with pytest.raises(AssertionError, match="gradient of input"):
        assert_same_values(ref, detour)


def test_values_judge_catches_other_max_pool_indices():
    x = torch.arange(16.0, dtype=torch.float64).view(1, 1, 4, 4)
    ref = run(lambda: F.max_pool2d(x, 2, return_indices=True), {})
    out, idx = ref.outputs
    with pytest.raises(AssertionError):
        assert_same_values(ref, Run((out, idx - 1)))


def test_memory_format_judge_catches_a_contiguous_output_where_torch_is_channels_last():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).to(memory_format=torch.channels_last)
    ref = run(lambda: F.max_pool2d(x, 2), {})
    assert _layout(ref.outputs[0]) == (False, True)
    assert_same_memory_format(ref, run(lambda: cnnkern.max_pool2d(x, 2), {}))
    with pytest.raises(AssertionError, match="channels_last"):
        assert_same_memory_format(ref, Run((ref.outputs[0].contiguous(),)))


def test_rejection_judge_needs_the_function_and_the_argument_named():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)

    def wrong_words():
        raise RuntimeError("cnnkern.max_pool2d: something is wrong")

    def torch_call():
        return F.max_pool2d(x, 2, stride=0)

    assert_rejected_like_torch("max_pool2d", torch_call,
                               lambda: cnnkern.max_pool2d(x, 2, stride=0), ["stride"])
    with pytest.raises(AssertionError, match="names none of"):
        assert_rejected_like_torch("max_pool2d", torch_call, wrong_words, ["stride"])
    with pytest.raises(pytest.fail.Exception, match="accepted what torch rejects"):
        assert_rejected_like_torch("max_pool2d", torch_call, lambda: None, ["stride"])
    with pytest.raises(pytest.fail.Exception, match="torch accepted"):
        assert_rejected_like_torch("max_pool2d", lambda: None, wrong_words, ["stride"])
