"""What cnnkern.explain() returns: per pass, which algorithm runs and what decided it, and per
algorithm whether it can run, its workspace and (measure=True) its time and error.

Every word of "why" comes from the code that decides: the auto rule's clause is the string the
C++ rule returns beside its preference order, the workspace figures are the estimates each
algorithm registers beside its kernels (torch.ops.cnnkern.conv2d_explain), the autotuner's
timings are the ones cnnkern.tuning recorded. Nothing is estimated here: without measure=True
the time and error fields are None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

PASSES = ("fwd", "bwd_input", "bwd_weight")


@dataclass
class AlgorithmStatus:
    """One algorithm on one pass."""

    name: str
    built: bool                 # built for the device at all
    can_run: bool
    why_not: str                # "" when it can run
    # Bytes besides the inputs and the output (upper bounds, see csrc/ops/conv2d_algo.h
    # Conv2dWorkspace): allocated once per call, and for each thread that runs part of the
    # pass (kept by it between calls). None: cannot run, or no estimate registered.
    workspace_per_call: Optional[int] = None
    workspace_per_thread: Optional[int] = None
    workspace: str = ""         # what those bytes hold
    # measure=True only: median seconds of the pass (cnnkern.tuning's timer) on random data of
    # the call's shapes, and max |y - y64| / max |y64| against a float64 reference.
    time_s: Optional[float] = None
    error: Optional[float] = None


@dataclass
class PassExplanation:
    """What one pass runs and why."""

    name: str                   # "fwd", "bwd_input" or "bwd_weight"
    runs: Optional[str]         # None: nothing can run it
    # "auto" (the backend's rule, or its priorities), "requested" or "autotuner".
    decided_by: str
    reason: str
    # The autotuner's recorded seconds per algorithm for this call's key (its pinned passes
    # timed together), when it decided.
    tuner_times: Optional[Dict[str, float]] = None
    algorithms: List[AlgorithmStatus] = field(default_factory=list)


@dataclass
class Explanation:
    """cnnkern.explain()'s answer: `str()` for a person, `to_dict()` for a program."""

    device: str
    dtype: str
    input_size: List[int]       # as the op sees it (batched; "same" padding's extra applied)
    weight_size: List[int]
    stride: List[int]
    padding: List[int]
    dilation: List[int]
    groups: int
    algo: str
    threads: int                # torch.get_num_threads() when explained (the CPU estimates')
    measured: bool
    passes: List[PassExplanation] = field(default_factory=list)
    # CPU only: the instruction set of each kernel family the chosen algorithms use, and why
    # (cnnkern.tuning.isa_choices: measured / forced / rule / only).
    cpu_isa: List[str] = field(default_factory=list)

    def runs(self) -> Dict[str, Optional[str]]:
        """{pass: the algorithm that runs it (None if none can)}."""
        return {p.name: p.runs for p in self.passes}

    def to_dict(self) -> dict:
        """Plain lists, dicts, strings and numbers (json.dumps takes it as it is)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Explanation":
        data = dict(data)
        passes = []
        for p in data.pop("passes"):
            p = dict(p)
            algos = [AlgorithmStatus(**a) for a in p.pop("algorithms")]
            passes.append(PassExplanation(**p, algorithms=algos))
        return cls(**data, passes=passes)

    def __str__(self) -> str:
        return "\n".join(_lines(self))


# --- text ----------------------------------------------------------------------------------

def _bytes(n: Optional[int]) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _seconds(t: float) -> str:
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.2f} s"


def _algorithm_line(a: AlgorithmStatus, measured: bool) -> str:
    if not a.built:
        return f"    {a.name}: not built for this device"
    if not a.can_run:
        return f"    {a.name}: {a.why_not}"
    if a.workspace_per_call is None:
        ws = "workspace unknown (no estimate registered)"
    else:
        ws = (f"workspace <= {_bytes(a.workspace_per_call)} per call + "
              f"{_bytes(a.workspace_per_thread)} per thread: {a.workspace}")
    if not measured:
        numbers = "not measured (measure=True)"
    else:
        numbers = f"{_seconds(a.time_s)}, error {a.error:.2e} (max |y - y64| / max |y64|)"
    return f"    {a.name}: can run; {numbers}\n        {ws}"


def _lines(e: Explanation) -> List[str]:
    runs = e.runs()
    how = {"auto": "picked by auto", "requested": "as requested",
           "autotuner": "picked by the autotuner"}
    if all(r is None for r in runs.values()):
        first = next(p for p in e.passes)
        lines = [f"cannot run: {first.reason}"]
    elif len(set(runs.values())) == 1:
        lines = [f"runs: {runs['fwd']} ({how[e.passes[0].decided_by]}) on {e.device}"]
    else:
        each = ", ".join(f"{name or 'nothing'} for {p}" for p, name in runs.items())
        lines = [f"runs: {each} ({how[e.passes[0].decided_by]}) on {e.device}"]
    lines.append(f"problem: {e.dtype} input {e.input_size}, weight {e.weight_size}, stride "
                 f"{e.stride}, padding {e.padding}, dilation {e.dilation}, groups {e.groups}, "
                 f"algo={e.algo!r}, {e.threads} CPU threads")
    for p in e.passes:
        lines.append(f"{p.name}: {p.runs or 'nothing can run'} -- {p.decided_by}: {p.reason}")
        lines.extend(_algorithm_line(a, e.measured) for a in p.algorithms)
    if e.cpu_isa:
        lines.append("cpu isa: " + "; ".join(e.cpu_isa))
    return lines


# --- building one --------------------------------------------------------------------------

def _tuner_decision(x4, weight, bias, stride, pad, dilation, groups):
    """(passes the autotuner pinned, its choice, its recorded times) for a call with these
    arguments, or None when the tuner would not decide it (off, or no kernels to time)."""
    from . import tuning

    if not tuning.enabled() or x4.device.type not in ("cpu", "cuda"):
        return None
    key = tuning.cache_key(x4, weight, bias, stride, pad, dilation, groups)
    return (tuning.pinned_passes(x4, weight), tuning.cache().get(key), tuning.recorded_times(key))


def _tuner_reason(passes, choice, times) -> str:
    timed = "+".join(passes)
    if times is None:
        return (f"its cached choice for this key ({timed} timed together), loaded from a file: "
                f"no timings recorded in this process")
    ranked = ", ".join(f"{a} {_seconds(t)}" for a, t in sorted(times.items(), key=lambda i: i[1]))
    return f"fastest of the {timed} timings it recorded for this key: {ranked}"


def _pass_decision(pass_, algo, rule, order, why_not, select, tuned):
    """(runs, decided_by, reason, tuner_times) of one pass."""
    if algo != "auto":
        try:
            return select(pass_), "requested", f"algo={algo!r} was requested", None
        except (RuntimeError, ValueError) as e:
            return None, "requested", str(e).splitlines()[0], None
    if tuned is not None and pass_ in tuned[0] and tuned[1] is not None:
        return tuned[1], "autotuner", _tuner_reason(*tuned), tuned[2]
    try:
        runs = select(pass_)
    except (RuntimeError, ValueError) as e:
        return None, "auto", str(e).splitlines()[0], None
    reason = rule
    first = order.index(runs)
    skipped = [f"{n}: {w}" for n, w in zip(order[:first], why_not[:first])]
    if skipped:
        reason += f"; the first of them that can run (before it: {'; '.join(skipped)})"
    if tuned is not None and pass_ in tuned[0]:
        reason += ("; the autotuner is on but has not timed this key: the next call times every "
                   "algorithm that can run and may pick another")
    return runs, "auto", reason, None


def _measure(device, dtype, in_size, weight_size, has_bias, stride, pad, dilation, groups,
             passes):
    """Times each runnable algorithm of each pass (cnnkern.tuning's timer) on random data of
    these shapes and sets its error against float64."""
    from . import backends, tuning

    ops = torch.ops.cnnkern
    x = torch.randn(in_size, dtype=dtype, device=device)
    w = torch.randn(weight_size, dtype=dtype, device=device)
    b = torch.randn(weight_size[0], dtype=dtype, device=device) if has_bias else None
    args = (stride, pad, dilation, groups)
    x64, w64 = x.double(), w.double()
    ref_out = F.conv2d(x64, w64, None if b is None else b.double(), *args)
    go = torch.randn(ref_out.shape, dtype=dtype, device=device)
    go64 = go.double()
    tf32 = backends.get_allow_tf32()
    runs = {
        "fwd": lambda a: ops.conv2d(x, w, b, *args, a, tf32),
        "bwd_input": lambda a: ops.conv2d_backward_input(go, w, list(in_size), *args, a, tf32),
        "bwd_weight": lambda a: ops.conv2d_backward_weight(go, x, list(weight_size), *args, a,
                                                           tf32),
    }
    refs = {
        "fwd": lambda: ref_out,
        "bwd_input": lambda: torch.nn.grad.conv2d_input(list(in_size), w64, go64, *args),
        "bwd_weight": lambda: torch.nn.grad.conv2d_weight(x64, list(weight_size), go64, *args),
    }
    with torch.no_grad():
        for p in passes:
            ref = refs[p.name]()
            scale = ref.abs().max().item() if ref.numel() else 0.0
            for a in p.algorithms:
                if not a.can_run:
                    continue
                y = runs[p.name](a.name)
                diff = (y.double() - ref).abs().max().item() if ref.numel() else 0.0
                a.error = diff / scale if scale > 0 else diff
                a.time_s = tuning._default_timer(lambda: runs[p.name](a.name))


def build(input, weight, bias, stride, padding, dilation, groups, algo, measure) -> Explanation:
    """cnnkern.explain (cnnkern/algo.py checks the arguments and documents them)."""
    from . import algo as _algo
    from .functional import _conv_args

    x4, _, stride, pad, dilation, groups = _conv_args("cnnkern.explain", input, weight, stride,
                                                      padding, dilation, groups, algo)
    device = input.device.type
    in_size, weight_size = list(x4.shape), list(weight.shape)
    problem = (in_size, weight_size, stride, pad, dilation, groups, input.dtype, device)
    built = _algo.algorithms(device)
    tuned = _tuner_decision(x4, weight, bias, stride, pad, dilation, groups)

    def select(pass_):
        return torch.ops.cnnkern.conv2d_select(*problem, algo, pass_)

    passes = []
    for pass_ in PASSES:
        rule, order, why_not, per_call, per_thread, what = torch.ops.cnnkern.conv2d_explain(
            *problem, pass_)
        runs, decided_by, reason, times = _pass_decision(pass_, algo, rule, list(order),
                                                         list(why_not), select, tuned)
        statuses = []
        for i, name in enumerate(order):
            known = per_call[i] >= 0
            statuses.append(AlgorithmStatus(
                name, True, not why_not[i], why_not[i],
                per_call[i] if known else None, per_thread[i] if known else None, what[i]))
        for name in _algo.KNOWN_ALGORITHMS:
            if name not in built:
                statuses.append(AlgorithmStatus(name, False, False, f"not built for {device}"))
        passes.append(PassExplanation(pass_, runs, decided_by, reason, times, statuses))
    if measure:
        _measure(input.device, input.dtype, in_size, weight_size, bias is not None, stride, pad,
                 dilation, groups, passes)
    return Explanation(device, str(input.dtype).replace("torch.", ""), in_size, weight_size,
                       list(stride), list(pad), list(dilation), groups, algo,
                       torch.get_num_threads(), bool(measure), passes,
                       _cpu_isa_lines(device, passes, groups, in_size[1]))


# The CPU kernel families each algorithm runs (csrc/cpu/<family>): Winograd's transforms and
# its per-point GEMMs, im2col's GEMM, direct's own kernels (depthwise ones when every output
# channel reads one input channel, as csrc/cpu/direct/depthwise.h decides).
_FAMILIES = {"im2col": ("gemm",), "winograd": ("winograd", "gemm"),
             "winograd_f2": ("winograd", "gemm")}


def _cpu_isa_lines(device, passes, groups, channels) -> List[str]:
    if device != "cpu":
        return []
    from . import tuning

    used = []
    for p in passes:
        fams = _FAMILIES.get(p.runs, ())
        if p.runs == "direct":
            fams = ("depthwise",) if groups > 1 and groups == channels else ("direct",)
        used += [f for f in fams if f not in used]
    choices = tuning.isa_choices()["families"]
    return [tuning.describe_isa_choice(f, choices[f]) for f in used]
