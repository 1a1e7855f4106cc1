"""`cnnkern.convert(model)`: put cnnkern layers into an existing PyTorch model.

What it replaces (modules of exactly these torch types; subclasses may override forward and
are left alone, with the reason in the report):

- nn.Conv2d -> cnnkern.nn.Conv2d (same parameters, same keys);
- nn.MaxPool2d / nn.AvgPool2d / nn.AdaptiveAvgPool2d -> their cnnkern.nn twins (every
  argument of the torch layers is supported, return_indices and divisor_override included);
- with fuse=True, every Conv2d -> BatchNorm2d (-> ReLU) chain -> one fused conv + BN (+ ReLU)
  computation (see cnnkern/_fused_modules.py for how the modules keep their names and keys).

Finding chains. The model (or, where it does not trace, each of its submodules, recursively)
is traced with torch.fx, only to read its data flow: a chain is a conv module call whose output
feeds only a BatchNorm2d module call (num_features == out_channels), each module called once
and registered under one name. The model is traced in train and in eval mode and a chain is
fused only where both agree (a forward may branch on self.training). Where a (sub)module does
not trace (data-dependent control flow...), chains are taken from its nn.Sequential children
instead: adjacent Conv2d, BatchNorm2d(, ReLU), whose data flow nn.Sequential fixes. The
modules are then swapped in the original module tree: the result has the original classes
and state_dict keys (never an fx.GraphModule).

ReLU. If the BN's output feeds only an nn.ReLU module that is called nowhere else, the ReLU is
fused in and the module becomes nn.Identity. A ReLU that must stay (ResNet's BasicBlock applies
`self.relu` again after the residual add; F.relu / torch.relu / .relu_() are code in the
forward) stays exactly as it is and only conv + BN are fused: a ReLU runs there anyway, and
fusing it as well would only add a second ReLU mask to the backward.

In-place writes. A model may write into a BN's output (torchvision's BasicBlock does
`out += identity`; an inplace ReLU that stays): fine for batch_norm, whose backward does not
keep its output, an autograd error for a fused op that does. Where the graph shows such a write
(fx records `x += y` as x + y, so a binary operator with the fused output on its left counts)
and the fused op keeps its output (tried once, see _fused_modules), the fused conv returns a
copy while autograd records. In the nn.Sequential scan the next module is checked; past the
Sequential's end a write is assumed possible.
"""

from __future__ import annotations

import copy
import inspect
import operator
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import nn as cnn
from ._fused_modules import (FusedAwayBatchNorm2d, FusedConvBatchNorm2d,
                             output_survives_in_place_change)

__all__ = ["convert", "ConvertReport", "ConvertEntry"]

_POOLS = {
    nn.MaxPool2d: (cnn.MaxPool2d, "max_pool2d"),
    nn.AvgPool2d: (cnn.AvgPool2d, "avg_pool2d"),
    nn.AdaptiveAvgPool2d: (cnn.AdaptiveAvgPool2d, "adaptive_avg_pool2d"),
}
_CNNKERN_POOLS = tuple(new for new, _ in _POOLS.values())

_RELU_FUNCTIONS = {F.relu: "F.relu", F.relu_: "F.relu_", torch.relu: "torch.relu",
                   torch.relu_: "torch.relu_"}
_RELU_METHODS = ("relu", "relu_")

# fx records `x += y` on a tensor as operator.add (it cannot tell the two apart), so a binary
# operator whose left operand is a fused output may be an in-place write into it.
_AUGMENTABLE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
                operator.mod, operator.pow, operator.and_, operator.or_, operator.xor,
                operator.lshift, operator.rshift, operator.matmul, operator.iadd, operator.isub,
                operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
                operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift,
                operator.irshift, operator.imatmul}

# Devices and dtypes the cnnkern kernels take (the ops check them again at run time).
_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

@dataclass
class ConvertEntry:
    """One layer (or chain) `convert` looked at.

    kind: "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "conv_bn_relu" or
    "conv_bn"; name: the module's qualified name (the conv's for a chain; "" is the model
    itself); replaced: whether it was; detail: what it became, or why it was not.
    """

    name: str
    kind: str
    replaced: bool
    detail: str
    bn: Optional[str] = None
    relu: Optional[str] = None

    def __str__(self) -> str:
        chain = ""
        if self.bn is not None:
            chain = f" + {self.bn}" + (f" + {self.relu}" if self.relu else "")
        mark = "replaced" if self.replaced else "NOT replaced"
        return f"{self.kind:20s} {(self.name or '<model>') + chain}: {mark}: {self.detail}"


@dataclass
class ConvertReport:
    """What `convert` replaced and fused, what it did not and why, and how it found chains.

    analysis maps each analysed (sub)module ("" = the model) to "torch.fx" or to
    "untraceable (...); nn.Sequential scan" / "untraceable (...); analysed per child".
    """

    entries: List[ConvertEntry] = field(default_factory=list)
    analysis: Dict[str, str] = field(default_factory=dict)

    @property
    def replaced(self) -> List[ConvertEntry]:
        return [e for e in self.entries if e.replaced]

    @property
    def skipped(self) -> List[ConvertEntry]:
        return [e for e in self.entries if not e.replaced]

    @property
    def fused(self) -> List[ConvertEntry]:
        return [e for e in self.replaced if e.kind in ("conv_bn", "conv_bn_relu")]

    def names(self, kind: Optional[str] = None, replaced: Optional[bool] = True) -> List[str]:
        """Qualified names of the entries of `kind` (all kinds if None) with that status."""
        return [e.name for e in self.entries
                if (kind is None or e.kind == kind) and (replaced is None or e.replaced == replaced)]

    def entry(self, name: str, kind: Optional[str] = None) -> ConvertEntry:
        for e in self.entries:
            if e.name == name and (kind is None or e.kind == kind):
                return e
        raise KeyError(f"ConvertReport: no entry named {name!r}"
                       + (f" of kind {kind!r}" if kind else ""))

    def __str__(self) -> str:
        counts = Counter(e.kind for e in self.replaced)
        head = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"
        lines = [f"cnnkern.convert: replaced {head}; {len(self.skipped)} not replaced"]
        lines += [f"  analysis of {name or '<model>'}: {how}" for name, how in self.analysis.items()]
        lines += ["  " + str(e) for e in self.entries]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Which modules can be swapped
# ---------------------------------------------------------------------------------------------

def _hooks(m: nn.Module) -> str:
    """The kinds of hooks registered on `m` (a swap would drop them), or ""."""
    kinds = [k for k in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                         "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
                         "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
             if getattr(m, k, None)]
    return ", ".join(k.strip("_") for k in kinds)


def _type_problem(m: nn.Module, torch_type: type) -> str:
    if type(m) is torch_type:
        return ""
    if torch.nn.utils.parametrize.is_parametrized(m):
        return "parametrized (torch.nn.utils.parametrize); left as it is"
    return (f"its type {type(m).__module__}.{type(m).__qualname__} is a subclass of "
            f"nn.{torch_type.__name__} whose forward may differ; left as it is")


def _device_problem(t: torch.Tensor, what: str = "its weight") -> str:
    """Why cnnkern has no kernels for tensors like `t` ("" if it has)."""
    device = t.device.type
    if device == "meta":
        return ""
    if device == "cuda":
        from . import cuda_built
        if not cuda_built():
            return f"{what} is on cuda but cnnkern was built without its CUDA kernels"
    if device not in _DTYPES:
        return f"{what} is on {device}, which has no cnnkern kernels"
    if t.dtype not in _DTYPES[device]:
        allowed = ", ".join(str(d).replace("torch.", "") for d in _DTYPES[device])
        return (f"{what} has dtype {str(t.dtype).replace('torch.', '')}; cnnkern's "
                f"{device} kernels take {allowed}")
    return ""


def _pool_problem(model: nn.Module) -> str:
    """A pooling layer has no tensor of its own: the model's say what it will be fed."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point():
            why = _device_problem(t, f"the model's {name}")
            if why:
                return why
    return ""


def _conv_problem(conv: nn.Module) -> str:
    """Why `conv` cannot become a cnnkern conv ("" if it can)."""
    if isinstance(conv, FusedConvBatchNorm2d):
        return "already converted (a cnnkern fused conv)"
    if type(conv) is cnn.Conv2d:
        return ""
    return _type_problem(conv, nn.Conv2d) or (
        f"has hooks ({_hooks(conv)}) that a swap would drop" if _hooks(conv) else ""
    ) or _device_problem(conv.weight)


def _layer_algo(conv: nn.Conv2d, algo: str) -> Tuple[str, str]:
    """(algorithm for this layer, note): `algo`, or "auto" where `algo` cannot run the layer.

    Whether an algorithm can run a convolution depends on the kernel, stride, dilation, groups,
    dtype and device (not on the input's height and width), so a small probe input decides.
    """
    if algo == "auto" or conv.weight.device.type == "meta":
        return algo, ""
    from .algo import can_implement

    k = conv.weight.shape[2:]
    size = [max(16, d * (kk - 1) + 1) for d, kk in zip(conv.dilation, k)]
    probe = torch.empty(1, conv.in_channels, *size, dtype=conv.weight.dtype,
                        device=conv.weight.device)
    ok, why = can_implement(probe, conv.weight, conv.bias, conv.stride,
                            0 if conv.padding_mode != "zeros" else conv.padding, conv.dilation,
                            conv.groups, algo=algo)
    if ok:
        return algo, ""
    return "auto", f"{why}, so it runs 'auto'"


# ---------------------------------------------------------------------------------------------
# Finding Conv2d -> BatchNorm2d (-> ReLU) chains
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Chain:
    conv: str
    bn: str
    relu: Optional[str]      # the ReLU module fused in (it becomes nn.Identity), or None
    note: str                # e.g. why a ReLU after the BN was not fused in
    inplace_after: bool      # the fused (conv + BN) output may be modified in place next


class _Tracer(fx.Tracer):
    """Traces through every module except torch.nn's and cnnkern's layers (kept as calls)."""

    _LEAVES = (nn.Conv2d, _BatchNorm, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
               nn.AdaptiveAvgPool2d, cnn.ConvTranspose2d)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self._LEAVES) or super().is_leaf_module(m, module_qualified_name)


def _fusable_conv(m) -> bool:
    return type(m) in (nn.Conv2d, cnn.Conv2d)


def _pair_problem(conv: nn.Module, bn: nn.Module, conv_name: str, bn_name: str,
                  aliases: Dict[int, List[str]]) -> str:
    """Why conv -> bn cannot be fused, as far as the two modules themselves tell."""
    if type(bn) is not nn.BatchNorm2d:
        return (_type_problem(bn, nn.BatchNorm2d) if isinstance(bn, nn.BatchNorm2d)
                else f"the norm layer is {type(bn).__name__}, not nn.BatchNorm2d")
    if bn.num_features != conv.out_channels:
        return (f"BatchNorm2d has num_features={bn.num_features} but the conv has "
                f"out_channels={conv.out_channels}")
    for what, m, name in (("conv", conv, conv_name), ("BatchNorm2d", bn, bn_name)):
        if len(aliases[id(m)]) > 1:
            return f"the {what} is registered under several names ({', '.join(aliases[id(m)])})"
        if _hooks(m):
            return f"the {what} has hooks ({_hooks(m)}) that fusing would bypass"
    return _conv_problem(conv)


def _relu_module_kept(relu: nn.Module, calls: int, aliases: Dict[int, List[str]]) -> str:
    """Why a ReLU module after a fused BN must stay ("" if it can become nn.Identity)."""
    if calls > 1:
        why = f"it is called {calls} times"
    elif len(aliases[id(relu)]) > 1:
        why = f"it is registered under several names ({', '.join(aliases[id(relu)])})"
    elif _hooks(relu):
        why = f"it has hooks ({_hooks(relu)})"
    else:
        return ""
    return f"the ReLU module stays after it: {why}"


def _modifies_in_place(user: fx.Node, value: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    """Whether the call `user` may write into its argument `value` (x += y, relu_, inplace=True)."""
    if user.op == "call_module":
        return bool(getattr(modules.get(user.target), "inplace", False))
    first = user.args[0] if user.args else None
    if user.op == "call_method":
        return first is value and user.target.endswith("_") and not user.target.endswith("__")
    if user.op != "call_function":
        return False
    name = getattr(user.target, "__name__", "")
    if first is value and (user.target in _AUGMENTABLE or name.endswith("_")
                           and not name.endswith("__")):
        return True                                            # x += y, torch.relu_(x)
    if user.kwargs.get("inplace"):
        return True
    try:                                                       # F.relu(x, True)
        bound = inspect.signature(user.target).bind(*user.args, **user.kwargs)
        return bool(bound.arguments.get("inplace", False))
    except (TypeError, ValueError):
        return False


def _graph_chains(root: nn.Module, graph: fx.Graph, prefix: str,
                  aliases: Dict[int, List[str]]) -> Tuple[Dict[str, _Chain], Dict[str, Tuple[str, str]]]:
    """Chains in one traced graph, and {conv: (bn, why not)} for convs followed by a BN unfused."""
    modules = dict(root.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    chains: Dict[str, _Chain] = {}
    notes: Dict[str, Tuple[str, str]] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not _fusable_conv(modules.get(node.target)):
            continue
        bn_nodes = [u for u in node.users
                    if u.op == "call_module" and isinstance(modules.get(u.target), _BatchNorm)]
        if not bn_nodes:
            continue
        conv, bn_node = modules[node.target], bn_nodes[0]
        bn = modules[bn_node.target]
        conv_name, bn_name = prefix + node.target, prefix + bn_node.target
        if calls[node.target] > 1:
            why = f"the conv is called {calls[node.target]} times"
        elif len(node.users) > 1:
            users = ", ".join(sorted(u.name for u in node.users))
            why = f"the conv's output is used {len(node.users)} times ({users})"
        elif calls[bn_node.target] > 1:
            why = f"the BatchNorm2d is called {calls[bn_node.target]} times"
        elif tuple(bn_node.args) != (node,) or bn_node.kwargs:
            why = "the BatchNorm2d is called with other arguments than the conv's output"
        else:
            why = _pair_problem(conv, bn, conv_name, bn_name, aliases)
        if why:
            notes[conv_name] = (bn_name, why)
            continue

        relu, note = None, ""
        users = list(bn_node.users)
        if len(users) == 1:
            u = users[0]
            only_input = tuple(u.args) == (bn_node,) and not u.kwargs
            if u.op == "call_module" and type(modules.get(u.target)) is nn.ReLU and only_input:
                note = _relu_module_kept(modules[u.target], calls[u.target], aliases)
                relu = None if note else prefix + u.target
            elif u.op == "call_function" and u.target in _RELU_FUNCTIONS:
                note = f"the {_RELU_FUNCTIONS[u.target]} call after it stays (it is code)"
            elif u.op == "call_method" and u.target in _RELU_METHODS:
                note = f"the .{u.target}() call after it stays (it is code)"
        # A ReLU output cannot have been modified in place before backward in a model that
        # trains (ReLU keeps its output for backward), so only a conv + BN output is checked.
        inplace_after = relu is None and any(_modifies_in_place(u, bn_node, modules)
                                             for u in users)
        chains[conv_name] = _Chain(conv_name, bn_name, relu, note, inplace_after)
    return chains, notes


def _sequential_chains(seq: nn.Sequential, prefix: str, aliases: Dict[int, List[str]]
                       ) -> Tuple[Dict[str, _Chain], Dict[str, Tuple[str, str]]]:
    """Chains among adjacent children of an nn.Sequential (whose forward fixes the data flow)."""
    items = list(seq._modules.items())
    chains: Dict[str, _Chain] = {}
    notes: Dict[str, Tuple[str, str]] = {}
    for i in range(len(items) - 1):
        (cname, conv), (bname, bn) = items[i], items[i + 1]
        if not _fusable_conv(conv) or not isinstance(bn, _BatchNorm):
            continue
        conv_name, bn_name = prefix + cname, prefix + bname
        why = _pair_problem(conv, bn, conv_name, bn_name, aliases)
        if why:
            notes[conv_name] = (bn_name, why)
            continue
        relu, note = None, ""
        after = items[i + 2][1] if i + 2 < len(items) else None
        if type(after) is nn.ReLU:
            note = _relu_module_kept(after, 1, aliases)
            relu = None if note else prefix + items[i + 2][0]
        # The module after the chain may write into its output; past the end of the Sequential
        # we cannot see what will, so we assume it might.
        inplace_after = relu is None and (after is None or bool(getattr(after, "inplace", False)))
        chains[conv_name] = _Chain(conv_name, bn_name, relu, note, inplace_after)
    return chains, notes


def _trace_chains(module: nn.Module, prefix: str, aliases):
    """Chains found by torch.fx in both train and eval mode (raises if it does not trace)."""
    flags = {m: m.training for m in module.modules()}
    found = []
    try:
        for mode in (True, False):
            for m in flags:            # the flag only: a module's own train() may do more
                m.training = mode
            found.append(_graph_chains(module, _Tracer().trace(module), prefix, aliases))
    finally:
        for m, flag in flags.items():
            m.training = flag
    (train_chains, train_notes), (eval_chains, eval_notes) = found
    chains = {k: c for k, c in train_chains.items() if eval_chains.get(k) == c}
    notes = {**eval_notes, **train_notes}
    for k in set(train_chains) | set(eval_chains):
        if k not in chains and k not in notes:
            c = train_chains.get(k) or eval_chains[k]
            notes[k] = (c.bn, "the forward differs between train and eval mode around it")
    return chains, notes


def _analyse(module: nn.Module, prefix: str, aliases, report: ConvertReport):
    """fx where `module` traces; otherwise its nn.Sequential adjacency, and each child in turn."""
    try:
        chains, notes = _trace_chains(module, prefix, aliases)
        report.analysis[prefix.rstrip(".")] = "torch.fx"
        return chains, notes
    except Exception as e:  # noqa: BLE001  (any tracing failure means: analyse the parts)
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
        if len(why) > 120:
            why = why[:117] + "..."
    chains, notes = {}, {}
    if type(module) is nn.Sequential:
        how = "nn.Sequential scan of its children"
        chains, notes = _sequential_chains(module, prefix, aliases)
    else:
        how = "analysed per child"
    report.analysis[prefix.rstrip(".")] = f"untraceable ({why}); {how}"
    for name, child in module.named_children():
        if isinstance(child, _Tracer._LEAVES) or not any(True for _ in child.children()):
            continue
        c, n = _analyse(child, f"{prefix}{name}.", aliases, report)
        chains.update(c)
        notes.update(n)
    return chains, notes


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, leaf, new)


def convert(model: nn.Module, algo: str = "auto", fuse: bool = True, *, inplace: bool = False,
            report: bool = False):
    """`model` with its convolutions, pooling layers and Conv-BN(-ReLU) chains on cnnkern.

    Replaces every nn.Conv2d by cnnkern.nn.Conv2d(algo=algo), nn.MaxPool2d / nn.AvgPool2d /
    nn.AdaptiveAvgPool2d by cnnkern.nn's, and (fuse=True) every Conv2d -> BatchNorm2d
    (-> ReLU) chain by one fused conv + BN (+ ReLU) computation; see the module docstring for
    how chains are found. Every module stays at its name with the same parameters and
    buffers, so the state_dict keys are unchanged: the result loads the original class's
    checkpoints, and its state_dict loads into the original class.

    algo: the conv algorithm for each converted conv ("auto", "direct", "im2col",
    "winograd", ...); a layer the named algorithm cannot run (winograd on a 1x1 conv) runs
    "auto" instead, with a warning and the reason in the report. Convs that already are
    cnnkern layers keep their own algo.

    inplace=False (the default) converts a deep copy and leaves `model` untouched;
    inplace=True swaps the modules inside `model` itself (the new modules share its Parameter
    objects, so an optimiser built on `model` before still trains the result).

    report=True returns (model, ConvertReport) instead of the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"cnnkern.convert: model must be an nn.Module; got {type(model).__name__}")
    if not isinstance(algo, str):
        raise TypeError(f"cnnkern.convert: algo must be a string; got {algo!r}")
    if not inplace:
        try:
            model = copy.deepcopy(model)
        except Exception as e:  # noqa: BLE001  (whatever deepcopy raises, say what to do)
            raise RuntimeError(f"cnnkern.convert: cannot deep-copy the model ({e}); "
                               f"inplace=True converts it in place instead") from e
    rep = ConvertReport()
    aliases: Dict[int, List[str]] = defaultdict(list)
    for name, m in model.named_modules(remove_duplicate=False):
        aliases[id(m)].append(name)

    chains: Dict[str, _Chain] = {}
    if fuse:
        chains, notes = _analyse(model, "", aliases, rep)
        for conv_name, (bn_name, why) in sorted(notes.items()):
            rep.entries.append(ConvertEntry(conv_name, "conv_bn", False, why, bn=bn_name))

    new: Dict[int, nn.Module] = {}   # id(old module) -> its replacement
    pool_problem = _pool_problem(model)
    fallbacks: List[str] = []

    def conv_algo(conv, name):
        if isinstance(conv, cnn.Conv2d):
            return conv.algo, ""
        layer_algo, note = _layer_algo(conv, algo)
        if note:
            fallbacks.append(name)
        return layer_algo, note

    for name, ch in chains.items():
        conv, bn = model.get_submodule(ch.conv), model.get_submodule(ch.bn)
        layer_algo, algo_note = conv_algo(conv, name)
        away = FusedAwayBatchNorm2d.from_torch(bn, fused_into=ch.conv)
        fused_relu = ch.relu is not None
        copy_output = ch.inplace_after and not output_survives_in_place_change(fused_relu)
        new[id(conv)] = FusedConvBatchNorm2d.fuse(conv, away, fused_relu, layer_algo, ch.bn,
                                                  copy_output=copy_output)
        new[id(bn)] = away
        detail = f"fused (algo={layer_algo!r})"
        if fused_relu:
            relu = model.get_submodule(ch.relu)
            new[id(relu)] = nn.Identity().train(relu.training)
            detail += f"; ReLU {ch.relu} -> nn.Identity"
        notes = [ch.note, algo_note]
        if copy_output:
            notes.append("its output is copied while autograd records: the next op writes into "
                         "it in place and the fused op keeps its output for backward")
        detail += "".join("; " + n for n in notes if n)
        rep.entries.append(ConvertEntry(name, "conv_bn_relu" if fused_relu else "conv_bn",
                                        True, detail, bn=ch.bn, relu=ch.relu))

    for name, m in model.named_modules():
        if id(m) in new:
            continue
        if isinstance(m, nn.Conv2d):
            why = _conv_problem(m)
            if type(m) is cnn.Conv2d:
                why = "already a cnnkern.nn.Conv2d"
            if why:
                rep.entries.append(ConvertEntry(name, "conv2d", False, why))
                continue
            layer_algo, algo_note = conv_algo(m, name)
            new[id(m)] = cnn.Conv2d.from_torch(m, layer_algo).train(m.training)
            rep.entries.append(ConvertEntry(
                name, "conv2d", True, f"cnnkern.nn.Conv2d(algo={layer_algo!r})"
                + (f"; {algo_note}" if algo_note else "")))
        elif isinstance(m, tuple(_POOLS)) and not isinstance(m, _CNNKERN_POOLS):
            torch_type = next(t for t in _POOLS if isinstance(m, t))
            new_type, kind = _POOLS[torch_type]
            why = _type_problem(m, torch_type) or (
                f"has hooks ({_hooks(m)}) that a swap would drop" if _hooks(m) else ""
            ) or pool_problem
            if why:
                rep.entries.append(ConvertEntry(name, kind, False, why))
                continue
            new[id(m)] = _pool_like(m, new_type).train(m.training)
            rep.entries.append(ConvertEntry(name, kind, True, f"cnnkern.nn.{new_type.__name__}"))

    for old_id, replacement in new.items():
        for path in aliases[old_id]:
            if path == "":
                model = replacement
            else:
                _set_module(model, path, replacement)
    if fallbacks:
        warnings.warn(f"cnnkern.convert: algo {algo!r} cannot run {len(fallbacks)} layer(s) "
                      f"({', '.join(fallbacks[:5])}{', ...' if len(fallbacks) > 5 else ''}); "
                      f"they run 'auto' (see report=True)", stacklevel=2)
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    rep.entries.sort(key=lambda e: order.get(e.name, len(order)))
    return (model, rep) if report else model


def _pool_like(m: nn.Module, new_type: type) -> nn.Module:
    """A cnnkern pooling layer with the same arguments as the torch one `m`."""
    if isinstance(m, nn.MaxPool2d):
        return new_type(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices,
                        m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return new_type(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                        m.divisor_override)
    return new_type(m.output_size)
