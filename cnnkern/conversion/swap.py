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
from .._block_forward import FusedBlockForward, ResidualBlockForward, residual_block_convs
from .._relu_mark import SkipAppliedReLU
from ..nn import FusedAwayBatchNorm2d, FusedConvBatchNorm2d, output_survives_in_place_change
from .chains import Chain, analyse
from .eligibility import algo_for_layer, lookup, pool_problem, replace_problem
from .report import ConvertEntry, ConvertReport


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, leaf, new)


def convert(model: nn.Module, algo: str = "auto", fuse: bool = True, *, inplace: bool = False,
            report: bool = False, fuse_residual: bool = True):
    """`model` with its convolutions, pooling layers and Conv-BN(-ReLU) chains on cnnkern.

    Replaces every nn.Conv2d by cnnkern.nn.Conv2d(algo=algo), nn.ConvTranspose2d by
    cnnkern.nn.ConvTranspose2d(algo=algo), nn.MaxPool2d / nn.AvgPool2d / nn.AdaptiveAvgPool2d
    by cnnkern.nn's, and (fuse=True) every Conv2d -> BatchNorm2d (-> ReLU) chain by one fused
    conv + BN (+ ReLU) computation; cnnkern/conversion/chains.py says how chains are found.
    The layers it cannot replace (eligibility.LAYERS lists them) are left as they are, each
    with the reason in the report. Every module stays at its name with the same parameters and
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

    fuse_residual=True (with fuse): in each torchvision ResNet BasicBlock / Bottleneck whose
    convs fused, the tail `out += identity; relu(out)` joins the last conv + BN as well
    (cnnkern/_block_forward.py, ResidualBlockForward; report kind "residual_add_relu").
    False keeps the add and the ReLU as torch ops (the comparison in bench/resnet_residual_fusion.py).
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
    blocks = []                      # (module whose forward is the chain, the conv's name in it)
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
        fused_relu = ch.relu is not None or ch.block is not None
        if ch.block is not None:
            blocks.append((model.get_submodule(ch.block),
                           ch.conv[len(ch.block) + 1:] if ch.block else ch.conv))
        copy_output = ch.inplace_after and not output_survives_in_place_change(fused_relu)
        new[id(conv)] = FusedConvBatchNorm2d.fuse(conv, away, fused_relu, layer_algo, ch.bn,
                                                  copy_output=copy_output, relu_max=ch.relu_max)
        new[id(bn)] = away
        detail = f"fused (algo={layer_algo!r})"
        if ch.relu is not None:
            relu = model.get_submodule(ch.relu)
            kind = type(relu).__name__
            if ch.shared_relu:
                new[id(relu)] = SkipAppliedReLU.from_torch(relu)
                detail += f"; {kind} {ch.relu} -> SkipAppliedReLU"
            else:
                new[id(relu)] = nn.Identity().train(relu.training)
                detail += f"; {kind} {ch.relu} -> nn.Identity"
        notes = [ch.note, algo_note]
        if copy_output:
            notes.append("its output is copied while autograd records: the next op writes into "
                         "it in place and the fused op keeps its output for backward")
        detail += "".join("; " + n for n in notes if n)
        rep.entries.append(ConvertEntry(name, "conv_bn_relu" if fused_relu else "conv_bn",
                                        True, detail, bn=ch.bn, relu=ch.relu))

    for name, m in model.named_modules():
        found = lookup(m)
        if id(m) in new or found is None:
            continue
        layer = found[1]
        why = replace_problem(m, pools_why)
        if why:
            rep.entries.append(ConvertEntry(name, layer.kind, False, why))
            continue
        detail = ""
        layer_algo = algo
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            layer_algo, algo_note = conv_algo(m, name)
            detail = f"(algo={layer_algo!r})" + (f"; {algo_note}" if algo_note else "")
        new[id(m)] = layer.make(m, layer_algo).train(m.training)
        rep.entries.append(ConvertEntry(name, layer.kind, True,
                                        f"cnnkern.nn.{type(new[id(m)]).__name__}{detail}"))

    for old_id, replacement in new.items():
        for path in aliases[old_id]:
            if path == "":
                model = replacement
            else:
                _set_module(model, path, replacement)
    for block, conv_name in blocks:   # after the swap: the fused conv is in place
        block.forward = FusedBlockForward(block, conv_name)
    if fuse and fuse_residual:
        for name, m in model.named_modules():
            found = residual_block_convs(m)
            if found is not None:
                m.forward = ResidualBlockForward(m, *found)
                rep.entries.append(ConvertEntry(name, "residual_add_relu", True,
                                                f"{found[1]} + BN + residual add + ReLU fused"))
    if fallbacks:
        warnings.warn(f"cnnkern.convert: algo {algo!r} cannot run {len(fallbacks)} layer(s) "
                      f"({', '.join(fallbacks[:5])}{', ...' if len(fallbacks) > 5 else ''}); "
                      f"they run 'auto' (see report=True)", stacklevel=2)
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    rep.entries.sort(key=lambda e: order.get(e.name, len(order)))
    return (model, rep) if report else model

