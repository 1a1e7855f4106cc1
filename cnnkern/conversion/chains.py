"""Finding the Conv2d -> BatchNorm2d (-> ReLU) chains `cnnkern.convert` fuses.

The model (or, where it does not trace, each of its submodules, recursively) is traced with
torch.fx, only to read its data flow: a chain is a conv module call whose output feeds only a
BatchNorm2d module call (num_features == out_channels), each module called once and
registered under one name. The model is traced in train and in eval mode and a chain is fused
only where both agree (a forward may branch on self.training). Where a (sub)module does not
trace (data-dependent control flow...), chains are taken from its nn.Sequential children
instead: adjacent Conv2d, BatchNorm2d(, ReLU), whose data flow nn.Sequential fixes.

ReLU. If the BN's output feeds only an nn.ReLU (or nn.ReLU6: the fused op's ReLU clamped
above at 6, `relu_max`) module, the ReLU is fused in. A ReLU6 module called elsewhere too stays
as it is (SkipAppliedReLU knows plain ReLU only). A module called
nowhere else becomes nn.Identity; one called elsewhere too (ResNet's blocks apply `self.relu`
again after the residual add) becomes cnnkern._relu_mark.SkipAppliedReLU, which returns the
fused output as it is and applies the ReLU at its other calls (`shared_relu`). A ReLU that
must stay (hooks, several names; F.relu / torch.relu / .relu_() are code in the forward)
stays exactly as it is and only conv + BN are fused: a ReLU runs there anyway, and fusing it
as well would only add a second ReLU mask to the backward. Except where the ReLU call ends a
module whose whole forward is the chain (GoogLeNet's BasicConv2d: `return F.relu(self.bn(
self.conv(x)), inplace=True)`, checked by tracing that module alone): the ReLU is fused in and
convert replaces that module's forward by a call of the fused conv (`block`;
cnnkern/_block_forward.py).

In-place writes. A model may write into a BN's output (torchvision's BasicBlock does
`out += identity`; an inplace ReLU that stays): fine for batch_norm, whose backward does not
keep its output, an autograd error for a fused op that does. Where the graph shows such a write
(fx records `x += y` as x + y, so a binary operator with the fused output on its left counts)
the chain says so (inplace_after), and convert has the fused conv return a copy if the fused
op keeps its output (cnnkern.nn.output_survives_in_place_change). In the nn.Sequential scan
the next module is checked; past the Sequential's end a write is assumed possible.
"""

from __future__ import annotations

import inspect
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import nn as cnn
from .eligibility import conv_problem, hooks, type_problem
from .report import ConvertReport

_RELU_FUNCTIONS = {F.relu: "F.relu", F.relu_: "F.relu_", torch.relu: "torch.relu",
                   torch.relu_: "torch.relu_"}
_RELU_METHODS = ("relu", "relu_")
# The activation modules fused in after a BN, and the upper clamp of each (None: plain ReLU).
_ACTIVATIONS = {nn.ReLU: None, nn.ReLU6: 6.0}

# fx records `x += y` on a tensor as operator.add (it cannot tell the two apart), so a binary
# operator whose left operand is a fused output may be an in-place write into it.
_AUGMENTABLE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
                operator.mod, operator.pow, operator.and_, operator.or_, operator.xor,
                operator.lshift, operator.rshift, operator.matmul, operator.iadd, operator.isub,
                operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
                operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift,
                operator.irshift, operator.imatmul}


@dataclass(frozen=True)
class Chain:
    conv: str
    bn: str
    relu: Optional[str]      # the ReLU module fused in, or None
    note: str                # e.g. why a ReLU after the BN was not fused in
    inplace_after: bool      # the fused (conv + BN) output may be modified in place next
    shared_relu: bool = False  # the fused-in ReLU module is called elsewhere too: it stays,
    #                            as SkipAppliedReLU, instead of becoming nn.Identity
    relu_max: Optional[float] = None  # the fused ReLU's upper clamp (nn.ReLU6: 6.0)
    block: Optional[str] = None  # the module whose forward is exactly conv -> BN -> a ReLU
    #                              call: that ReLU is fused in and the forward replaced


class _Tracer(fx.Tracer):
    """Traces through every module except torch.nn's and cnnkern's layers (kept as calls)."""

    _LEAVES = (nn.Conv2d, _BatchNorm, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.AvgPool2d,
               nn.AdaptiveAvgPool2d, cnn.ConvTranspose2d)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self._LEAVES) or super().is_leaf_module(m, module_qualified_name)


def _fusable_conv(m) -> bool:
    return type(m) in (nn.Conv2d, cnn.Conv2d)


def _pair_problem(conv: nn.Module, bn: nn.Module, conv_name: str, bn_name: str,
                  aliases: Dict[int, List[str]]) -> str:
    """Why conv -> bn cannot be fused, as far as the two modules themselves tell."""
    if type(bn) is not nn.BatchNorm2d:
        return (type_problem(bn, nn.BatchNorm2d) if isinstance(bn, nn.BatchNorm2d)
                else f"the norm layer is {type(bn).__name__}, not nn.BatchNorm2d")
    if bn.num_features != conv.out_channels:
        return (f"BatchNorm2d has num_features={bn.num_features} but the conv has "
                f"out_channels={conv.out_channels}")
    for what, m, name in (("conv", conv, conv_name), ("BatchNorm2d", bn, bn_name)):
        if len(aliases[id(m)]) > 1:
            return f"the {what} is registered under several names ({', '.join(aliases[id(m)])})"
        if hooks(m):
            return f"the {what} has hooks ({hooks(m)}) that fusing would bypass"
    return conv_problem(conv)


def _relu_module_kept(relu: nn.Module, aliases: Dict[int, List[str]]) -> str:
    """Why a ReLU module after a fused BN must stay as it is ("" if it can be fused in: it
    then becomes nn.Identity, or SkipAppliedReLU where it is called elsewhere too)."""
    if len(aliases[id(relu)]) > 1:
        why = f"it is registered under several names ({', '.join(aliases[id(relu)])})"
    elif hooks(relu):
        why = f"it has hooks ({hooks(relu)})"
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


def _relu_call(node: fx.Node, value: fx.Node) -> str:
    """The name of the ReLU call `node` applies to `value` alone (F.relu(value, inplace=...),
    value.relu_(), ...), or "" if it is not one."""
    if not node.args or node.args[0] is not value or set(node.kwargs) - {"inplace"}:
        return ""
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        rest = node.args[1:]
        return _RELU_FUNCTIONS[node.target] if all(isinstance(a, bool) for a in rest) else ""
    if node.op == "call_method" and node.target in _RELU_METHODS and len(node.args) == 1:
        return f".{node.target}()"
    return ""


def _calling_module(node: fx.Node) -> str:
    """The name (in the traced root) of the module whose forward made the call `node`."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def _is_chain_block(block: nn.Module, conv: str, bn: str) -> bool:
    """Whether block's forward, traced alone, is exactly input -> conv -> bn -> a ReLU call ->
    output (conv and bn named within the block): then replacing it by the fused conv + BN +
    ReLU changes nothing but the work done."""
    if isinstance(block, _Tracer._LEAVES) or "forward" in vars(block):
        return False
    try:
        nodes = list(_Tracer().trace(block).nodes)
    except Exception:  # noqa: BLE001  (a block that does not trace alone is left as it is)
        return False
    if len(nodes) != 5 or [n.op for n in nodes[:3]] != ["placeholder", "call_module",
                                                        "call_module"]:
        return False
    x, c, b, r, out = nodes
    return (c.target == conv and tuple(c.args) == (x,) and not c.kwargs
            and b.target == bn and tuple(b.args) == (c,) and not b.kwargs
            and bool(_relu_call(r, b)) and tuple(out.args) == (r,))


def _chain_block(relu: fx.Node, conv: fx.Node, bn: fx.Node, modules: Dict[str, nn.Module],
                 prefix: str) -> Optional[str]:
    """The full name of the module whose forward is exactly conv -> bn -> the ReLU call `relu`
    (the module that made the call; "" the model itself), or None if there is none."""
    if not _relu_call(relu, bn):
        return None
    block = _calling_module(relu)
    inner = f"{block}." if block else ""
    if not (conv.target.startswith(inner) and bn.target.startswith(inner)
            and _is_chain_block(modules[block], conv.target[len(inner):],
                                bn.target[len(inner):])):
        return None
    return prefix + block if block else prefix.rstrip(".")


def _graph_chains(root: nn.Module, graph: fx.Graph, prefix: str,
                  aliases: Dict[int, List[str]]) -> Tuple[Dict[str, Chain], Dict[str, Tuple[str, str]]]:
    """Chains in one traced graph, and {conv: (bn, why not)} for convs followed by a BN unfused."""
    modules = dict(root.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    chains: Dict[str, Chain] = {}
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

        relu, note, shared, relu_max, block = None, "", False, None, None
        users = list(bn_node.users)
        if len(users) == 1:
            u = users[0]
            only_input = tuple(u.args) == (bn_node,) and not u.kwargs
            act = modules.get(u.target) if u.op == "call_module" else None
            if type(act) in _ACTIVATIONS and only_input:
                note = _relu_module_kept(act, aliases)
                if not note and calls[u.target] > 1 and type(act) is not nn.ReLU:
                    note = (f"the {type(act).__name__} module stays after it: it is called "
                            f"{calls[u.target]} times")
                relu = None if note else prefix + u.target
                relu_max = None if relu is None else _ACTIVATIONS[type(act)]
                shared = relu is not None and calls[u.target] > 1
                if shared:
                    note = (f"the ReLU module is called {calls[u.target]} times: it stays as "
                            f"SkipAppliedReLU, which passes this layer's output through")
            elif u.op == "call_function" and u.target in _RELU_FUNCTIONS:
                note = f"the {_RELU_FUNCTIONS[u.target]} call after it stays (it is code)"
            elif u.op == "call_method" and u.target in _RELU_METHODS:
                note = f"the .{u.target}() call after it stays (it is code)"
            block = _chain_block(u, node, bn_node, modules, prefix)
            if block is not None:
                note = (f"the {_relu_call(u, bn_node)} call after it is fused in: it ends "
                        f"{block or '<model>'}, whose forward now calls the fused layer alone")
        # A ReLU output cannot have been modified in place before backward in a model that
        # trains (ReLU keeps its output for backward), so only a conv + BN output is checked.
        inplace_after = relu is None and block is None and any(
            _modifies_in_place(u, bn_node, modules) for u in users)
        chains[conv_name] = Chain(conv_name, bn_name, relu, note, inplace_after, shared, relu_max,
                                  block)
    return chains, notes


def _sequential_chains(seq: nn.Sequential, prefix: str, aliases: Dict[int, List[str]]
                       ) -> Tuple[Dict[str, Chain], Dict[str, Tuple[str, str]]]:
    """Chains among adjacent children of an nn.Sequential (whose forward fixes the data flow)."""
    items = list(seq._modules.items())
    chains: Dict[str, Chain] = {}
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
        relu, note, relu_max = None, "", None
        after = items[i + 2][1] if i + 2 < len(items) else None
        if type(after) in _ACTIVATIONS:
            note = _relu_module_kept(after, aliases)
            relu = None if note else prefix + items[i + 2][0]
            relu_max = None if relu is None else _ACTIVATIONS[type(after)]
        # The module after the chain may write into its output; past the end of the Sequential
        # we cannot see what will, so we assume it might.
        inplace_after = relu is None and (after is None or bool(getattr(after, "inplace", False)))
        chains[conv_name] = Chain(conv_name, bn_name, relu, note, inplace_after,
                                  relu_max=relu_max)
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


def analyse(module: nn.Module, prefix: str, aliases, report: ConvertReport):
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
        c, n = analyse(child, f"{prefix}{name}.", aliases, report)
        chains.update(c)
        notes.update(n)
    return chains, notes
