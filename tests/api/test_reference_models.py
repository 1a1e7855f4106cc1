"""Reference models: the lectures' weight and MAC counts, torchvision compatibility, and every
model against its plain-torch twin (cnnkern check), on the CPU (and on CUDA when present)."""

import math

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from cnnkern import models
from cnnkern.tools.check import check_model
from cnnkern.tools.summary import summarize
from conftest import per_backend

torchvision = pytest.importorskip("torchvision")


def _conv_fc_weights(model):
    return [m.weight.numel() for m in model.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_alexnet_original_weights_per_layer_match_the_lecture():
    with torch.device("meta"):
        m = models.alexnet_original()
    assert _conv_fc_weights(m) == [34_848, 307_200, 884_736, 1_327_104, 442_368, 37_748_736,
                                   16_777_216, 4_096_000]


def test_alexnet_original_macs_per_layer_match_the_lecture():
    rows = summarize(models.alexnet_original(), (3, 224, 224))
    macs = [r["macs"] for r in rows if r["kind"] in ("Conv2d", "Linear")]
    # The lecture prints millions, truncated: 105M / 223M / 149M / 224M / 74M / 37M / 16M / 4M.
    assert [m // 10**6 for m in macs] == [105, 223, 149, 224, 74, 37, 16, 4]
    assert rows[0]["shape"] == (96, 55, 55)


def test_alexnet_torchvision_variant_has_61100840_parameters():
    with torch.device("meta"):
        assert sum(p.numel() for p in models.alexnet().parameters()) == 61_100_840


def test_vgg16_weight_counts_match_the_lecture():
    with torch.device("meta"):
        m = models.vgg16()
    weights = _conv_fc_weights(m)
    stage_ends = [2, 4, 7, 10, 13]  # convs per stage: 2, 2, 3, 3, 3
    cumulative = [sum(weights[:i]) for i in stage_ends]
    assert cumulative == [38_592, 259_776, 1_734_336, 7_632_576, 14_710_464]
    assert sum(weights[:15]) == 134_248_128
    assert sum(weights) == 138_344_128
    assert sum(p.numel() for p in m.parameters()) == 138_357_544


def test_summary_cumulative_weights_for_vgg16():
    rows = summarize(models.vgg16(), (3, 32, 32))
    convs = [r for r in rows if r["kind"] == "Conv2d"]
    assert convs[1]["cumulative"] == 38_592 and convs[-1]["cumulative"] == 14_710_464
    assert rows[-1]["cumulative"] == 138_344_128
    built = cnnkern.algorithms("cpu")
    for r in convs:  # e.g. "direct (auto's pick)"
        name, _, why = r["algo"].partition(" ")
        assert name in built and why == "(auto's pick)", r["algo"]


def _randomise(model, seed=0):
    """Weights and BN statistics at a scale where errors would show (not near-zero init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.dim() > 1:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
    return model


TORCHVISION_TWINS = [
    ("alexnet", lambda: torchvision.models.alexnet(), {}, 64),
    ("vgg16_bn", lambda: torchvision.models.vgg16_bn(), {}, 32),
    ("resnet18", lambda: torchvision.models.resnet18(), {}, 64),
    ("resnet50", lambda: torchvision.models.resnet50(), {}, 64),
    ("googlenet", lambda: torchvision.models.googlenet(aux_logits=False, init_weights=False),
     {"branch3_kernel": 3}, 64),
]


@pytest.mark.parametrize("name,tv_build,kwargs,size", TORCHVISION_TWINS,
                         ids=[t[0] for t in TORCHVISION_TWINS])
def test_torchvision_weights_load_unchanged_and_outputs_match(name, tv_build, kwargs, size):
    torch.manual_seed(0)
    ref = _randomise(tv_build()).eval()
    ours = models.MODELS[name](**kwargs).eval()
    assert list(ours.state_dict().keys()) == list(ref.state_dict().keys())
    ours.load_state_dict(ref.state_dict())  # strict: same keys, same shapes
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert torch.equal(got.argmax(1), want.argmax(1))


CHECKED = [  # (model, input size, batch, extra kwargs): small inputs keep CI fast
    ("lenet5", None, 4, {}),
    ("alexnet_original", 224, 2, {}),
    ("alexnet", 64, 2, {}),
    ("vgg16", 32, 2, {}),
    ("vgg16_bn", 32, 4, {}),
    ("resnet18", 32, 4, {}),
    ("resnet50", 32, 4, {}),
    ("googlenet", 32, 4, {}),
    ("fcn_vgg16", 32, 2, {"fc_channels": 64}),
]


def _assert_check(results):
    for r in results:
        where = f"{r.model} {r.mode}"
        # float32 errors against the float64 twin, within a small factor of torch's own; for
        # gradients the L2 error over all parameters, which one ReLU-kink flip (see
        # cnnkern/check.py) cannot push past 1e-2 but a wrong kernel pushes to O(1)
        assert r.out_rel_fp64 <= 3 * r.torch_out_rel_fp64 + 1e-5, where
        assert r.grad_l2_rel <= 10 * r.torch_grad_l2_rel + 1e-2, where
        if r.mode == "eval":
            assert r.top1_agreement == 1.0, where
            assert r.out_max_rel <= 1e-4, where
        assert r.layers, where


@pytest.mark.parametrize("name,size,batch,kwargs", CHECKED, ids=[c[0] for c in CHECKED])
def test_model_matches_its_torch_twin_in_eval_and_train(name, size, batch, kwargs):
    _assert_check(check_model(name, "auto", "cpu", batch, size, model_kwargs=kwargs))


# In the CUDA emulator the smallest model: its cost there is per GPU thread, i.e. grows with the
# parameter count (ResNet-18's grad-weight alone is ~20 s); test_convert's small ResNet covers
# BN, residuals and strided 1x1 convs there.
CHECKED_EMULATED = [("lenet5", None, 2, {})]


@pytest.mark.parametrize("dev,case", per_backend(CHECKED, CHECKED_EMULATED, id_of=lambda c: c[0]),
                         indirect=["dev"])
def test_model_matches_its_cudnn_twin(case, dev, monkeypatch):
    name, size, batch, kwargs = case
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    _assert_check(check_model(name, "auto", dev.device.type, batch, size, model_kwargs=kwargs))


def test_check_reports_fallback_for_an_algorithm_a_layer_cannot_run():
    algo = "direct"
    results = check_model("lenet5", algo, "cpu", 2, modes=("eval",))
    assert set(results[0].plan.values()) == {"direct"}
    # a name that no layer can run is a fallback to auto with the reason in the plan
    results = check_model("lenet5", "winograd", "cpu", 2, modes=("eval",))
    assert all(p.startswith("auto (") for p in results[0].plan.values())


def test_fcn_vgg16_scores_every_pixel():
    m = models.fcn_vgg16(num_classes=5, fc_channels=32).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 5, 64, 96)
    kinds = {type(x) for x in m.modules()}
    assert cnnkern.nn.ConvTranspose2d in kinds and torch.nn.ConvTranspose2d not in {
        k for k in kinds if k is not cnnkern.nn.ConvTranspose2d}
    with pytest.raises(ValueError, match="multiples of 32"):
        m(torch.randn(1, 3, 40, 64))


def test_bilinear_kernel_upsamples_a_constant_to_a_constant():
    from cnnkern.models.fcn import bilinear_kernel

    w = bilinear_kernel(3, 4)
    x = torch.full((1, 3, 6, 6), 2.5)
    y = cnnkern.conv_transpose2d(x, w, stride=2, padding=1)
    assert y.shape == (1, 3, 12, 12)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.full((1, 3, 10, 10), 2.5))
    assert (w[0, 1] == 0).all()  # channels are upsampled independently


@pytest.mark.parametrize("stride,padding,output_padding,groups,dilation", [
    (1, 0, 0, 1, 1), (2, 1, 1, 1, 1), (3, 2, 2, 2, 1), (2, 0, 1, 1, 2), (8, 4, 0, 1, 1),
])
def test_conv_transpose2d_matches_torch(stride, padding, output_padding, groups, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3 * groups, dtype=torch.float64, requires_grad=True)
    args = (stride, padding, output_padding, groups, dilation)
    got = cnnkern.conv_transpose2d(x, w, b, *args)
    want = F.conv_transpose2d(x, w, b, *args)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    got_grads = torch.autograd.grad(got, (x, w, b), g)
    want_grads = torch.autograd.grad(want, (x, w, b), g)
    for a, r in zip(got_grads, want_grads):
        torch.testing.assert_close(a, r)
    assert torch.autograd.gradcheck(lambda *t: cnnkern.conv_transpose2d(*t, *args), (x, w, b))


def test_conv_transpose2d_module_loads_torch_weights_and_honours_output_size():
    ref = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1)
    ours = cnnkern.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 6, 7, 7)
    for size in (None, [14, 14], [13, 14]):
        torch.testing.assert_close(ours(x, output_size=size), ref(x, output_size=size))


def test_conv_transpose2d_rejects_output_padding_not_below_stride():
    with pytest.raises(ValueError, match="output_padding"):
        cnnkern.conv_transpose2d(torch.randn(1, 2, 3, 3), torch.randn(2, 2, 3, 3), stride=2,
                                 output_padding=2)


def test_iou_and_dice_lecture_example():
    a = torch.zeros(20, dtype=torch.bool)
    b = torch.zeros(20, dtype=torch.bool)
    a[:10] = True
    b[5:15] = True  # |A| = |B| = 10, |A ∩ B| = 5
    assert models.iou(a, b).item() == pytest.approx(1 / 3)
    assert models.dice(a, b).item() == pytest.approx(0.5)
    assert models.iou(a, a).item() == 1.0 and models.dice(a, ~a).item() == 0.0


def test_box_iou():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]])
    torch.testing.assert_close(models.box_iou(a, b), torch.tensor([1 / 7, 0.0]))


def test_classifier_localizer_heads_and_loss():
    backbone = models.lenet5().features
    m = models.ClassifierLocalizer(backbone, 120, num_classes=3)
    logits, boxes = m(torch.randn(4, 1, 32, 32))
    assert logits.shape == (4, 3) and boxes.shape == (4, 4)
    assert ((boxes > 0) & (boxes < 1)).all()  # sigmoid box head
    loss = m.loss(logits, boxes, torch.tensor([0, 1, 2, 0]), torch.rand(4, 4))
    loss.backward()
    assert m.box_head.weight.grad is not None and backbone[0].weight.grad is not None
