"""cnnkern.convert's report names every layer it did not replace, with the reason: layers of
other dimensions, uninitialised lazy convs, pooling cnnkern has no kernel for, quantized and
fake-quantized convs, transposed convs it cannot run, layers that already are cnnkern's.

The expected lines are written out here by hand (not read from the table in
cnnkern/conversion/eligibility.py), so a row that changes or goes missing fails the test.
"""

import warnings
from collections import OrderedDict

import pytest
import torch
import torch.ao.nn.intrinsic.qat as niqat
import torch.ao.nn.qat as nnqat
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
import torch.ao.nn.quantized.reference as nnqr
import torch.nn as tnn

import cnnkern
import cnnkern.nn as cnn
from conftest import assert_close

TWO_D = "cnnkern's kernels are 2-D only"
LAZY = ("an uninitialised lazy module (its weight has no shape until the first forward); run "
        "one forward, which makes it an nn.{}, then convert")
QUANTIZED = ("a quantized conv (integer weights and activations); cnnkern's kernels are "
             "floating-point only")
FAKE_QUANT = (": its forward quantizes and dequantizes the weight, which a cnnkern conv would "
              "skip; convert the float model instead")


def _quantized_layers():
    qconfig = torch.ao.quantization.get_default_qat_qconfig()
    with warnings.catch_warnings():   # torch deprecates creating quantized tensors
        warnings.simplefilter("ignore")
        return OrderedDict(
            q2d=nnq.Conv2d(2, 2, 3), qt2d=nnq.ConvTranspose2d(2, 2, 3), qd2d=nnqd.Conv2d(2, 2, 3),
            qat2d=nnqat.Conv2d(2, 2, 3, qconfig=qconfig),
            qatbnrelu=niqat.ConvBnReLU2d(2, 2, 3, qconfig=qconfig),
            ref2d=nnqr.Conv2d(2, 2, 3))


# name: (module, kind, reason), in the model's order.
NOT_REPLACED = OrderedDict(
    c1d=(tnn.Conv1d(2, 2, 3), "conv1d", f"a 1-D convolution: {TWO_D}"),
    c3d=(tnn.Conv3d(2, 2, 3), "conv3d", f"a 3-D convolution: {TWO_D}"),
    ct1d=(tnn.ConvTranspose1d(2, 2, 3), "conv_transpose1d", f"a 1-D transposed convolution: {TWO_D}"),
    ct3d=(tnn.ConvTranspose3d(2, 2, 3), "conv_transpose3d", f"a 3-D transposed convolution: {TWO_D}"),
    lazy2d=(tnn.LazyConv2d(2, 3), "conv2d", LAZY.format("Conv2d")),
    lazyt2d=(tnn.LazyConvTranspose2d(2, 3), "conv_transpose2d", LAZY.format("ConvTranspose2d")),
    lp=(tnn.LPPool2d(2, 2), "lp_pool2d", "cnnkern has no power-average (LP) pooling kernel"),
    frac=(tnn.FractionalMaxPool2d(2, output_size=3), "fractional_max_pool2d",
          "cnnkern has no fractional (random-window) max pooling kernel"),
    amax=(tnn.AdaptiveMaxPool2d(1), "adaptive_max_pool2d",
          "cnnkern has no adaptive max pooling kernel"),
    unpool=(tnn.MaxUnpool2d(2), "max_unpool2d", "cnnkern has no max unpooling kernel"),
    mp3d=(tnn.MaxPool3d(2), "max_pool3d", f"3-D pooling: {TWO_D}"),
    ap1d=(tnn.AvgPool1d(2), "avg_pool1d", f"1-D pooling: {TWO_D}"),
    aap3d=(tnn.AdaptiveAvgPool3d(1), "adaptive_avg_pool3d", f"3-D pooling: {TWO_D}"),
)
QUANTIZED_KINDS = OrderedDict(
    q2d=("quantized_conv2d", QUANTIZED),
    qt2d=("quantized_conv_transpose2d", QUANTIZED),
    qd2d=("quantized_conv2d", QUANTIZED),                    # dynamic: a quantized Conv2d
    qat2d=("conv2d", "a quantization-aware-training conv" + FAKE_QUANT),
    qatbnrelu=("conv2d", "a quantization-aware-training conv + BN" + FAKE_QUANT),  # its subclass
    ref2d=("conv2d", "a reference quantized conv" + FAKE_QUANT),
)


def _line(name, kind, reason):
    return f"  {kind:20s} {name}: NOT replaced: {reason}"


def test_every_layer_convert_does_not_replace_is_listed_with_the_reason():
    expected = OrderedDict((name, (kind, why)) for name, (_, kind, why) in NOT_REPLACED.items())
    expected.update(QUANTIZED_KINDS)
    layers = OrderedDict((name, m) for name, (m, _, _) in NOT_REPLACED.items())
    layers.update(_quantized_layers())
    layers["conv"] = tnn.Conv2d(2, 2, 3)           # the one layer here convert does replace
    original = tnn.Sequential(layers)
    model, report = cnnkern.convert(original, inplace=True, report=True)

    assert [(e.name, e.kind, e.detail) for e in report.skipped] == [
        (name, kind, why) for name, (kind, why) in expected.items()]
    text = str(report).splitlines()
    assert text[0] == f"cnnkern.convert: replaced 1 conv2d; {len(expected)} not replaced"
    for name, (kind, why) in expected.items():
        assert _line(name, kind, why) in text, name
        assert model.get_submodule(name) is layers[name]          # left exactly as it was
    assert type(model.conv) is cnn.Conv2d


class MyConvTranspose2d(tnn.ConvTranspose2d):
    pass


def test_transposed_convs_convert_cannot_run_are_left_with_the_reason():
    reflect = tnn.ConvTranspose2d(2, 2, 3)
    reflect.padding_mode = "reflect"     # torch's constructor refuses it; the attribute does not
    hooked = tnn.ConvTranspose2d(2, 2, 3)
    hooked.register_forward_hook(lambda *args: None)
    model, report = cnnkern.convert(tnn.Sequential(OrderedDict(
        reflect=reflect, hooked=hooked, sub=MyConvTranspose2d(2, 2, 3))), report=True)
    assert [(e.name, e.kind, e.detail) for e in report.skipped] == [
        ("reflect", "conv_transpose2d", "padding_mode='reflect': a transposed convolution pads "
                                        "with zeros only (torch's forward refuses it as well)"),
        ("hooked", "conv_transpose2d", "has hooks (forward_hooks) that a swap would drop"),
        ("sub", "conv_transpose2d", f"its type {__name__}.MyConvTranspose2d is a subclass of "
                                    "nn.ConvTranspose2d whose forward may differ; left as it is"),
    ]
    assert type(model.reflect) is tnn.ConvTranspose2d and type(model.hooked) is tnn.ConvTranspose2d


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=["c64", "c128"])
def test_layers_of_a_dtype_without_cnnkern_kernels_are_left_with_the_reason(dtype):
    # (float16/bfloat16 have CPU kernels: tests/api/test_convert.py converts such models.)
    name = str(dtype).replace("torch.", "")
    original = tnn.Sequential(OrderedDict(conv=tnn.Conv2d(2, 2, 3, padding_mode="circular"),
                                          up=tnn.ConvTranspose2d(2, 2, 2, stride=2),
                                          pool=tnn.MaxPool2d(2))).to(dtype)
    model, report = cnnkern.convert(original, report=True)
    kernels = "cnnkern's cpu kernels take float32, float64, float16, bfloat16"
    assert [(e.name, e.kind, e.detail) for e in report.skipped] == [
        ("conv", "conv2d", f"its weight has dtype {name}; {kernels}"),
        ("up", "conv_transpose2d", f"its weight has dtype {name}; {kernels}"),
        ("pool", "max_pool2d", f"the model's conv.weight has dtype {name}; {kernels}"),
    ]
    assert all(type(a) is type(b) for a, b in zip(model, original))  # torch's max_pool2d has no
    x = torch.randn(1, 2, 6, 6, dtype=dtype)                         # complex kernel: no forward
    layers = model[:2]
    torch.testing.assert_close(layers(x), original[:2](x), rtol=0, atol=0)


def test_layers_that_already_are_cnnkern_are_listed_as_such():
    model, report = cnnkern.convert(tnn.Sequential(
        cnn.Conv2d(2, 2, 3), cnn.ConvTranspose2d(2, 2, 2), cnn.MaxPool2d(2), cnn.AvgPool2d(2),
        cnn.AdaptiveAvgPool2d(1)), report=True)
    assert [(e.kind, e.detail) for e in report.skipped] == [
        ("conv2d", "already a cnnkern.nn.Conv2d"),
        ("conv_transpose2d", "already a cnnkern.nn.ConvTranspose2d"),
        ("max_pool2d", "already a cnnkern.nn.MaxPool2d"),
        ("avg_pool2d", "already a cnnkern.nn.AvgPool2d"),
        ("adaptive_avg_pool2d", "already a cnnkern.nn.AdaptiveAvgPool2d"),
    ]
    assert report.replaced == []


def test_an_initialised_lazy_conv_is_a_conv_and_is_replaced():
    original = tnn.Sequential(tnn.LazyConv2d(4, 3), tnn.LazyConvTranspose2d(2, 2, stride=2))
    x = torch.randn(1, 3, 6, 6)
    original(x)                        # initialises the weights: the layers become nn.Conv2d...
    model, report = cnnkern.convert(original, algo="im2col", report=True)
    assert [(e.kind, e.replaced) for e in report.entries] == [("conv2d", True),
                                                             ("conv_transpose2d", True)]
    assert_close(model(x), original(x))
