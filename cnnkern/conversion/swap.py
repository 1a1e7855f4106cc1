"""The function `cnnkern.convert`: finds what to replace (eligibility.py, chains.py) and swaps
the modules in the original module tree, so the result has the original classes and
state_dict keys (never an fx.GraphModule)."""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from typing import Dict, List

from torch import nn

from .. import nn as cnn
from ..nn import FusedAwayBatchNorm2d, FusedConvBatchNorm2d, output_survives_in_place_change
from .chains import Chain, analyse
from .eligibility import algo_for_layer, conv_problem, pool_problem, swap_problem
from .report import ConvertEntry, ConvertReport

_POOLS = {
    nn.MaxPool2d: (cnn.MaxPool2d, "max_pool2d"),
    nn.AvgPool2d: (cnn.AvgPool2d, "avg_pool2d"),
    nn.AdaptiveAvgPool2d: (cnn.AdaptiveAvgPool2d, "adaptive_avg_pool2d"),
}
_CNNKERN_POOLS = tuple(new for new, _ in _POOLS.values())


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, leaf, new)


def convert(model: nn.Module, algo: str = "auto", fuse: bool = True, *, inplace: bool = False,
            report: bool = False):
    """`model` with its convolutions, pooling layers and Conv-BN(-ReLU) chains on cnnkern.

    Replaces every nn.Conv2d by cnnkern.nn.Conv2d(algo=algo), nn.MaxPool2d / nn.AvgPool2d /
    nn.AdaptiveAvgPool2d by cnnkern.nn's, and (fuse=True) every Conv2d -> BatchNorm2d
    (-> ReLU) chain by one fused conv + BN (+ ReLU) computation; cnnkern/conversion/chains.py
    says how chains are found. Every module stays at its name with the same parameters and
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

    chains: Dict[str, Chain] = {}
    if fuse:
        chains, notes = analyse(model, "", aliases, rep)
        for conv_name, (bn_name, why) in sorted(notes.items()):
            rep.entries.append(ConvertEntry(conv_name, "conv_bn", False, why, bn=bn_name))

    new: Dict[int, nn.Module] = {}   # id(old module) -> its replacement
    pools_why = pool_problem(model)  # the same for every pooling layer
    fallbacks: List[str] = []

    def conv_algo(conv, name):
        if isinstance(conv, cnn.Conv2d):
            return conv.algo, ""
        layer_algo, note = algo_for_layer(conv, algo)
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
            why = conv_problem(m)
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
            why = swap_problem(m, torch_type) or pools_why
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
