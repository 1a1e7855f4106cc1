"""Where a whole model's time goes: one profiled iteration, split into layer kinds.

The kinds (KINDS): convolutions by shape class (3x3, 1x1, strided, depthwise/grouped, other
kernel sizes), "BN / ReLU" (batch norm and the activations: torch's batch_norm + relu, cnnkern's
fused bn_relu ops; the ReLU after a residual add lands here too, on both sides), pooling, and
"other" (linear layers, residual adds, the loss, the autograd engine, Python).

How an op's time is attributed, so that nothing counts twice and nothing is lost:

- every profiler event's *self* time (its time minus its children's) is counted once, under the
  kind of the outermost classified event above it (aten::empty inside cnnkern::conv2d is conv
  time; aten::mkldnn_convolution inside aten::conv2d takes aten::conv2d's kind), else under its
  own kind, else "other";
- a backward node ("autograd::engine::evaluate_function: ConvolutionBackward0", cnnkern's
  "GeneratedBackwardFor_cnnkern_conv2d_defaultBackward") takes the kind of the forward op with
  the same autograd sequence number, the one that created it; its children inherit it;
- conv kinds come from the recorded shapes and concrete arguments (weight shape, stride, groups)
  of the op that names them: aten::conv2d / aten::convolution / aten::convolution_backward and
  the cnnkern::conv2d* ops.

Only events under the iteration's root range are summed (the intra-op worker threads record
nothing of their own, and their time is inside the calling op's), so the kinds add up to the
root's total; `breakdowns` returns that total beside them so callers can check it.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Sequence

from torch.profiler import ProfilerActivity, profile, record_function

KINDS = ["conv 3x3", "conv 1x1", "conv strided", "conv depthwise/grouped", "conv other sizes",
         "BN / ReLU", "pooling", "other"]
ROOT = "bench.models.iteration"

# Where each conv op keeps (weight shape or size, stride, groups): ("shape", i) is
# input_shapes[i], ("arg", i) is concrete_inputs[i].
_CONV_ARGS = {
    "aten::conv2d": (("shape", 1), 3, 6),
    "aten::convolution": (("shape", 1), 3, 8),
    "aten::_convolution": (("shape", 1), 3, 8),
    "aten::convolution_backward": (("shape", 2), 4, 9),
    "cnnkern::conv2d": (("shape", 1), 3, 6),
    "cnnkern::conv2d_relu": (("shape", 1), 3, 6),
    "cnnkern::conv2d_backward_input": (("shape", 1), 3, 6),
    "cnnkern::conv2d_backward_weight": (("arg", 2), 3, 6),
}
# clamp: the eval-mode upper clamp of a fused ReLU6 (cnnkern.conv_bn_relu relu_max).
_BN_RELU = ("batch_norm", "bn_relu", "relu", "threshold_backward", "hardtanh", "clamp")


def conv_kind(weight_shape: Sequence[int], stride: Sequence[int], groups: int) -> str:
    """The kind of a conv with this weight shape [K, C/groups, R, S], stride and groups.
    Grouped first (its own kernel family whatever the stride), then strided, then by size."""
    if groups > 1:
        return "conv depthwise/grouped"
    if any(s > 1 for s in stride):
        return "conv strided"
    r, s = weight_shape[2], weight_shape[3]
    if (r, s) == (1, 1):
        return "conv 1x1"
    if (r, s) == (3, 3):
        return "conv 3x3"
    return "conv other sizes"


def op_kind(name: str, input_shapes: Sequence, concrete_inputs: Sequence) -> Optional[str]:
    """The kind of one profiled op from its name and recorded arguments; None when the name
    says nothing (aten::empty, aten::add_, ...): it then takes the kind of what called it."""
    where = _CONV_ARGS.get(name)
    if where is not None:
        (src, i), stride_at, groups_at = where
        weight = input_shapes[i] if src == "shape" else concrete_inputs[i]
        stride, groups = concrete_inputs[stride_at], concrete_inputs[groups_at]
        if not weight or len(weight) != 4 or stride is None or groups is None:
            raise ValueError(f"layer_kinds: cannot read weight/stride/groups of {name} from "
                             f"shapes {input_shapes} and arguments {concrete_inputs}")
        return conv_kind(weight, stride, int(groups))
    base = name.split("::", 1)[-1]
    if "pool" in base:
        return "pooling"
    if any(word in base for word in _BN_RELU):
        return "BN / ReLU"
    return None


# An autograd node's range ("ConvolutionBackward0", "MeanBackward1", cnnkern's
# "GeneratedBackwardFor_cnnkern_conv2d_defaultBackward") and the engine's range around it.
_NODE = re.compile(r"^autograd::engine::evaluate_function:|Backward\d*$")


def _backward_node(name: str) -> bool:
    return bool(_NODE.search(name))


def _own_kind(evt, forward_kinds: Dict[int, str]) -> Optional[str]:
    if _backward_node(evt.name):
        return forward_kinds.get(evt.sequence_nr)
    return op_kind(evt.name, evt.input_shapes or [], getattr(evt, "concrete_inputs", None) or [])


def _walk(evt, inherited: Optional[str], forward_kinds: Dict[int, str], out: Dict[str, float]):
    kind = inherited or _own_kind(evt, forward_kinds)
    out[kind or "other"] += evt.self_cpu_time_total
    for child in evt.cpu_children:
        _walk(child, kind, forward_kinds, out)


def _forward_kinds(events: Iterable) -> Dict[int, str]:
    """sequence number -> kind of the outermost classified forward op that carries it."""
    kinds: Dict[int, str] = {}
    for evt in events:  # events come in start order: an outer op before the ops it calls
        if evt.sequence_nr < 0 or evt.sequence_nr in kinds or _backward_node(evt.name):
            continue
        kind = op_kind(evt.name, evt.input_shapes or [], getattr(evt, "concrete_inputs", None) or [])
        if kind is not None:
            kinds[evt.sequence_nr] = kind
    return kinds


def breakdowns(events: List) -> List[Dict[str, float]]:
    """For each ROOT range in the profile, in order: milliseconds per kind (every kind of
    KINDS, zeros included) of the events under it, and "total": the range's own duration,
    which the kinds sum to."""
    roots = [e for e in events if e.name == ROOT]
    if not roots:
        raise RuntimeError(f"layer_kinds: no {ROOT!r} range in the profile")
    forward_kinds = _forward_kinds(events)
    results = []
    for root in roots:
        out = {k: 0.0 for k in KINDS}
        _walk(root, None, forward_kinds, out)
        result = {k: v / 1e3 for k, v in out.items()}  # profiler times are microseconds
        result["total"] = root.cpu_time_total / 1e3
        results.append(result)
    return results


def profile_kinds(fn, reps: int = 1) -> Dict[str, float]:
    """Runs fn() `reps` times under torch.profiler (shapes recorded), each call in its own ROOT
    range, and returns the breakdown of the call whose total is the median (the lower one of
    the middle two for an even count): one real call, so its kinds still sum to its total,
    and one held up by other processes does not speak for the model."""
    if reps < 1:
        raise ValueError(f"layer_kinds.profile_kinds: reps must be at least 1; got {reps}")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(reps):
            with record_function(ROOT):
                fn()
    calls = sorted(breakdowns(list(prof.events())), key=lambda b: b["total"])
    if len(calls) != reps:
        raise RuntimeError(f"layer_kinds: profiled {reps} calls but found {len(calls)} ranges")
    return calls[(reps - 1) // 2]
