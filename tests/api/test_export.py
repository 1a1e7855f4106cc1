"""Converted models beyond eager mode: torch.export.export captures them (cnnkern's ops with
their fake kernels, the BN fold traced into the graph) and the exported program computes what
the eager model does; under FakeTensorMode they propagate shapes without computing anything.
"""

import copy

import pytest
import torch
from torch._subclasses.fake_tensor import FakeCopyMode, FakeTensor, FakeTensorMode

import cnnkern
from conftest import assert_close
from test_convert import one_thread  # noqa: F401  (fixture)
from test_convert_transposed import TinySeg

torchvision = pytest.importorskip("torchvision")


def _call_targets(program):
    return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


def _export_and_compare(model, shape):
    """Exports `model` for inputs of `shape`; its program must give the eager model's output
    on that input and on another one (the weights are inputs of the program, not folded into
    one answer). Returns the ops the program calls."""
    x = torch.randn(shape)
    program = torch.export.export(model, (x,))
    for inp in (x, torch.randn(shape)):
        assert_close(program.module()(inp), model(inp))
    targets = _call_targets(program)
    assert not {t for t in targets if t.startswith("aten.") and "conv" in t}, sorted(targets)
    assert not {t for t in targets if "mkldnn" in t}, sorted(targets)
    return targets


def test_export_of_a_converted_resnet18_runs_as_the_eager_model():
    model = cnnkern.convert(torchvision.models.resnet18(weights=None).eval())
    targets = _export_and_compare(model, (1, 3, 64, 64))
    # The stem and the blocks' conv1 are conv + BN + ReLU (conv2d_relu); the blocks' conv2 +
    # BN run conv2d with the folded weights, the ReLU after the residual add apart. (Traced,
    # SkipAppliedReLU applies its ReLU after conv1 again: it reads no marks while compiling.)
    assert {"cnnkern.conv2d_relu.default", "cnnkern.conv2d.default",
            "cnnkern.max_pool2d_with_indices.default",
            "cnnkern.adaptive_avg_pool2d.default"} <= targets


def test_export_of_a_converted_model_with_transposed_convs():
    model = cnnkern.convert(TinySeg().eval())
    targets = _export_and_compare(model, (2, 3, 16, 16))
    assert "cnnkern.conv2d_backward_input.default" in targets     # the transposed convs


def _fake_copy(model, mode):
    with FakeCopyMode(mode):
        return copy.deepcopy(model)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("make,shape,out_shape", [
    (lambda: torchvision.models.resnet18(weights=None), (8, 3, 224, 224), (8, 1000)),
    (TinySeg, (4, 3, 96, 128), (4, 3, 192, 256)),
], ids=["resnet18", "tinyseg"])
def test_converted_model_under_fake_tensor_mode_gives_output_shapes(make, shape, out_shape,
                                                                    training):
    model = cnnkern.convert(make()).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mode = FakeTensorMode()
    fake = _fake_copy(model, mode)       # parameters and buffers fake too, the BN links kept
    with mode:
        out = fake(mode.from_tensor(torch.empty(shape)))
        out.sum().backward()
    assert isinstance(out, FakeTensor) and tuple(out.shape) == out_shape
    for (name, p), (_, real) in zip(fake.named_parameters(), model.named_parameters()):
        assert p.grad is not None and p.grad.shape == real.shape, name
    # The real model did not run: no buffer moved, no gradient.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_the_export_check_sees_torchs_convolutions():
    # What _export_and_compare excludes is what the unconverted model exports to.
    program = torch.export.export(TinySeg().eval(), (torch.randn(1, 3, 8, 8),))
    assert {"aten.conv2d.default", "aten.conv_transpose2d.input"} <= _call_targets(program)
