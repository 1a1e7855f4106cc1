"""Fused conv + BatchNorm (+ ReLU): cnnkern.conv_bn_relu, cnnkern.nn.ConvBNReLU2d / ConvBN2d,
the conv2d_relu epilogue op and the bn_relu_train / bn_relu_backward ops, against the
unfused torch sequence nn.Conv2d -> nn.BatchNorm2d -> nn.ReLU (float64 references where the
comparison is numeric), on every backend: the CPU, a GPU ("cuda") and the CUDA emulator
("cuda_emu"; the `dev` fixture, tests/conftest.py). The modules' own logic (state_dict keys, the
folded cache, saved tensors) is the same on every device and is tested on the CPU.

In the emulator, where every GPU thread is a fiber, the costly checks (float64 gradcheck,
opcheck's tracing) take one case each."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnkern
from conftest import (COMPILABLE_DEVICES, DEVICES, assert_close, assert_exact, cross,
                      fp64_error_ratio, per_device)

OPS = torch.ops.cnnkern
CPU_ALGOS = cnnkern.algorithms("cpu")

# (in, out, kernel, stride, padding, dilation, groups, H, W)
CASES = {
    "3x3_pad1": (4, 6, 3, 1, 1, 1, 1, 9, 8),
    "3x3_s2": (4, 6, 3, 2, 1, 1, 1, 9, 9),
    "1x1": (5, 7, 1, 1, 0, 1, 1, 6, 5),
    "groups2": (4, 6, 3, 1, 1, 1, 2, 7, 7),
    "same_5x5": (3, 4, 5, 1, "same", 1, 1, 8, 8),
    "dil2": (3, 4, 3, 1, 2, 2, 1, 9, 9),
}


def _can(algo, case, dtype=torch.float32, n=3):
    cin, cout, k, s, p, d, g, H, W = CASES[case]
    if p == "same":
        p = k // 2
    x = torch.empty(n, cin, H, W, dtype=dtype)
    w = torch.empty(cout, cin // g, k, k, dtype=dtype)
    return cnnkern.can_implement(x, w, None, s, p, d, g, algo=algo)[0]


def _params():
    out = []
    for algo in CPU_ALGOS:
        for case in CASES:
            marks = () if _can(algo, case) else (pytest.mark.skip(reason=f"{algo} cannot run"),)
            out.append(pytest.param(algo, case, id=f"{algo}-{case}", marks=marks))
    return out


def _pair(case, relu=True, bias=False, affine=True, track=True, momentum=0.1,
          dtype=torch.float32, algo="auto"):
    """(torch reference Sequential, cnnkern fused layer with the same weights)."""
    cin, cout, k, s, p, d, g, H, W = CASES[case]
    conv = nn.Conv2d(cin, cout, k, s, p, d, g, bias=bias, dtype=dtype)
    bn = nn.BatchNorm2d(cout, momentum=momentum, affine=affine, track_running_stats=track,
                        dtype=dtype)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    ref = nn.Sequential(conv, bn, *([nn.ReLU()] if relu else []))
    cls = cnnkern.nn.ConvBNReLU2d if relu else cnnkern.nn.ConvBN2d
    m = cls(cin, cout, k, s, p, d, g, bias=bias, momentum=momentum, affine=affine,
            track_running_stats=track, dtype=dtype, algo=algo)
    m.load_state_dict(ref.state_dict())
    return ref, m


def _input(case, n=3, dtype=torch.float32):
    cin, _, _, _, _, _, _, H, W = CASES[case]
    return torch.randn(n, cin, H, W, dtype=dtype)


def _tol(algo):
    # Winograd F(4x4)'s float32 error is larger than the other algorithms' (README table).
    return dict(dtype=torch.float32) if algo != "winograd" else dict(dtype=torch.float16)


def _step(module, x, g):
    x = x.detach().clone().requires_grad_()
    y = module(x)
    y.backward(g)
    return y, x.grad


def _grads(module):
    return {n: p.grad for n, p in module.named_parameters()}


def _check_same(ref, m, steps, x_list, g_list, tol, train=True):
    ref.train(train)
    m.train(train)
    for x, g in zip(x_list[:steps], g_list[:steps]):
        ref.zero_grad()
        m.zero_grad()
        y_ref, gx_ref = _step(ref, x, g)
        y, gx = _step(m, x, g)
        assert_close(y, y_ref, **tol, msg="output")
        assert_close(gx, gx_ref, **tol, msg="grad input")
        gr, gm = _grads(ref), _grads(m)
        assert gr.keys() == gm.keys()
        for name in gr:
            kw = dict(tol)
            if train and name == "0.bias":
                # BN in training mode cancels a conv bias: its gradient is exactly 0, and both
                # results are rounding noise of a sum of terms as large as grad_z's entries
                # (at most |grad_y| * gamma * invstd * 2 each); judge against that sum's size.
                kw["scale"] = max(1.0, float(g.abs().sum(dim=(0, 2, 3)).max()))
            assert_close(gm[name], gr[name], **kw, msg=f"grad {name}")
    for (name, b_ref), (_, b) in zip(ref.named_buffers(), m.named_buffers()):
        if b_ref.dtype == torch.long:
            assert b.item() == b_ref.item(), name
        else:
            assert_close(b, b_ref, **tol, msg=name)


# --- training and eval against torch, every algorithm --------------------------------------

RELU = [pytest.param(True, id="relu"), pytest.param(False, id="norelu")]
F32, F64 = pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")


# The CPU: every algorithm on every case, float32. CUDA: "auto" on one case with a conv bias,
# float32 and float64.
@pytest.mark.parametrize("dev, algo, case, relu, dtype", per_device(
    cpu=cross(_params(), RELU, [F32]),
    gpu=cross([pytest.param("auto", "3x3_pad1", id="auto-3x3_pad1")], RELU[:1], [F32, F64])),
    indirect=["dev"])
def test_train_and_eval_match_torch(algo, case, relu, dtype, on_dev, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    ref, m = _pair(case, relu=relu, algo=algo, bias=(case == "1x1" or on_dev.is_cuda),
                   dtype=dtype)
    xs = [_input(case, dtype=dtype) for _ in range(3)]
    gs = [torch.randn_like(ref(x)) for x in xs]
    ref.load_state_dict(m.state_dict())  # undo the running-stat updates of the probe above
    tol = _tol(algo) if dtype == torch.float32 else {}
    _check_same(ref, m, 3, xs, gs, tol, train=True)
    assert m[1].num_batches_tracked.item() == 3
    _check_same(ref, m, 2, xs, gs, tol, train=False)


BN_OPTIONS = [pytest.param(o, id=",".join(f"{k}={v}" for k, v in o.items())) for o in (
    dict(momentum=None), dict(track=False), dict(affine=False), dict(bias=True),
    dict(momentum=0.3, bias=True, affine=False), dict(track=False, affine=False, momentum=None))]


# The emulator takes the last two, which set every option between them.
@pytest.mark.parametrize("dev, opts", per_device(cpu=BN_OPTIONS, gpu=BN_OPTIONS,
                                                 emu=BN_OPTIONS[-2:]), indirect=["dev"])
def test_bn_options_match_torch_over_several_steps(opts, on_dev):
    ref, m = _pair("3x3_pad1", **opts)
    xs = [_input("3x3_pad1") * (i + 1) + i for i in range(4)]
    gs = [torch.randn(3, 6, 9, 8) for _ in range(4)]
    _check_same(ref, m, 4, xs, gs, {}, train=True)
    _check_same(ref, m, 2, xs, gs, {}, train=False)  # track=False: batch stats in eval too


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_momentum_none_is_cumulative_average_with_num_batches_tracked(on_dev):
    ref, m = _pair("1x1", momentum=None)
    xs = [_input("1x1") + i for i in range(5)]
    for x in xs:
        ref(x)
        m(x)
    assert m[1].num_batches_tracked.item() == 5
    assert_close(m[1].running_mean, ref[1].running_mean)
    assert_close(m[1].running_var, ref[1].running_var)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_float64_matches_torch_tightly(on_dev):
    ref, m = _pair("groups2", dtype=torch.float64, bias=True)
    xs = [_input("groups2", dtype=torch.float64) for _ in range(2)]
    gs = [torch.randn(3, 6, 7, 7, dtype=torch.float64) for _ in range(2)]
    _check_same(ref, m, 2, xs, gs, {}, train=True)
    _check_same(ref, m, 2, xs, gs, {}, train=False)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_padding_mode_reflect_and_unbatched_input(on_dev):
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    bn = nn.BatchNorm2d(4)
    ref = nn.Sequential(conv, bn, nn.ReLU())
    m = cnnkern.nn.ConvBNReLU2d.from_modules(copy.deepcopy(conv), copy.deepcopy(bn))
    x = torch.randn(2, 3, 6, 6)
    assert_close(m(x), ref(x))
    ref.eval(), m.eval()
    assert_close(m(x[0]), ref(x[:1])[0])  # unbatched (C, H, W) input, as cnnkern.conv2d


# --- functional -----------------------------------------------------------------------------

@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_functional_matches_torch_train_eval_and_none_running_stats(on_dev):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    gamma, beta = torch.rand(5, dtype=torch.float64) + 0.5, torch.randn(5, dtype=torch.float64)
    rm, rv = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.5
    for training in (True, False):
        for relu in (True, False):
            rm1, rv1, rm2, rv2 = rm.clone(), rv.clone(), rm.clone(), rv.clone()
            out = cnnkern.conv_bn_relu(x, w, b, gamma, beta, rm1, rv1, training, 0.2, 1e-3,
                                       stride=1, padding="same", relu=relu)
            z = F.conv2d(x, w, b, padding="same")
            ref = F.batch_norm(z, rm2, rv2, gamma, beta, training, 0.2, 1e-3)
            ref = F.relu(ref) if relu else ref
            assert_close(out, ref)
            assert_close(rm1, rm2)
            assert_close(rv1, rv2)
    out = cnnkern.conv_bn_relu(x, w, None, None, None, None, None, training=True)
    assert_close(out, F.relu(F.batch_norm(F.conv2d(x, w), None, None, training=True)))


# The per-channel reductions walk (image, pixel) positions a block's threads (256 on CUDA)
# apart: planes of 1 pixel, under 256 and over 256 take different steps.
@pytest.mark.parametrize("dev", DEVICES, indirect=True)
@pytest.mark.parametrize("hw", [1, 7, 17], ids=lambda h: f"{h}x{h}")
def test_training_statistics_and_gradients_for_plane_sizes_around_the_block(hw, on_dev):
    x = torch.randn(3, 2, hw, hw, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    gamma = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    beta = torch.randn(4, dtype=torch.float64, requires_grad=True)
    rm1, rv1 = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    rm2, rv2 = rm1.clone(), rv1.clone()
    out = cnnkern.conv_bn_relu(x, w, None, gamma, beta, rm1, rv1, True, 0.1, 1e-5)
    ref = F.relu(F.batch_norm(F.conv2d(x, w), rm2, rv2, gamma, beta, True, 0.1, 1e-5))
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, (x, w, gamma, beta), g)
    want = torch.autograd.grad(ref, (x, w, gamma, beta), g)
    assert_close(out, ref)
    assert_close(rm1, rm2)
    assert_close(rv1, rv2)
    for a, r in zip(got, want):
        assert_close(a, r)


def test_fold_bn_is_the_eval_formula_in_float64():
    w, b = torch.randn(4, 2, 3, 3), torch.randn(4)
    gamma, beta, rm, rv = torch.randn(4), torch.randn(4), torch.randn(4), torch.rand(4)
    wf, bf = cnnkern.functional.fold_bn(w, b, gamma, beta, rm, rv, 1e-5)
    s = gamma.double() / torch.sqrt(rv.double() + 1e-5)
    assert_exact(wf, (w.double() * s.view(-1, 1, 1, 1)).float())
    assert_exact(bf, ((b.double() - rm.double()) * s + beta.double()).float())


# --- the epilogue op ------------------------------------------------------------------------

# The CPU's Winograd has two schedules (CNNKERN_WINOGRAD_SCHEDULE); CUDA algorithms, one each.
@pytest.mark.parametrize("dev, algo, schedule", per_device(
    cpu=cross(CPU_ALGOS, ["", "blocked", "streaming"]),
    gpu=cross(["direct", "im2col", "winograd", "winograd_f2"], [""])), indirect=["dev"])
def test_conv2d_relu_epilogue_every_algorithm(algo, schedule, monkeypatch, on_dev):
    if algo not in on_dev.algorithms():
        pytest.skip(f"{algo} not built for {on_dev.name}")
    monkeypatch.setenv("CNNKERN_WINOGRAD_SCHEDULE", schedule)
    # 6 filters: the streaming output transform's last lane group is partly empty.
    x, w, b = torch.randn(2, 4, 10, 10), torch.randn(6, 4, 3, 3), torch.randn(6)
    x[0, 0, 0, 0] = float("nan")  # NaN stays NaN through the ReLU, as torch.relu
    out = OPS.conv2d_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1, algo)
    plain = OPS.conv2d(x, w, b, [1, 1], [1, 1], [1, 1], 1, algo)
    assert_exact(out, torch.relu(plain), equal_nan=True)
    assert torch.isnan(out).any()


# (input, weight) shapes for gradcheck; in the emulator smaller ones (8-10 s under ASan).
SMALL = [pytest.param((2, 2, 4, 4), (3, 2, 3, 3), id="2x2x4x4")]


@pytest.mark.parametrize("dev, xs, ws", per_device(
    cpu=[pytest.param((2, 3, 6, 6), (4, 3, 3, 3), id="2x3x6x6")],
    gpu=[pytest.param((2, 3, 6, 6), (4, 3, 3, 3), id="2x3x6x6")], emu=SMALL), indirect=["dev"])
def test_conv2d_relu_gradients(xs, ws, on_dev):
    x = torch.randn(xs, dtype=torch.float64, requires_grad=True)
    w = torch.randn(ws, dtype=torch.float64, requires_grad=True)
    b = torch.randn(ws[0], dtype=torch.float64, requires_grad=True)
    f = lambda x, w, b: OPS.conv2d_relu(x, w, b, [1, 1], [1, 1], [1, 1], 1, "auto")  # noqa
    assert torch.autograd.gradcheck(f, (x, w, b))


# --- float64 gradcheck and opcheck ----------------------------------------------------------

TRAINING_GRADCHECK = cross([True, False], [True, False],
                           [pytest.param((2, 3, 5, 5), (4, 3, 3, 3), id="2x3x5x5")])


# In the emulator one case, on smaller shapes.
@pytest.mark.parametrize("dev, affine, relu, xs, ws", per_device(
    cpu=TRAINING_GRADCHECK, gpu=TRAINING_GRADCHECK, emu=cross([True], [True], SMALL)),
    indirect=["dev"])
def test_training_op_gradcheck_float64(relu, affine, xs, ws, on_dev):
    x = torch.randn(xs, dtype=torch.float64, requires_grad=True)
    w = torch.randn(ws, dtype=torch.float64, requires_grad=True)
    b = torch.randn(ws[0], dtype=torch.float64, requires_grad=True)
    gamma = (torch.rand(ws[0], dtype=torch.float64) + 0.5).requires_grad_(affine)
    beta = torch.randn(ws[0], dtype=torch.float64).requires_grad_(affine)

    def f(x, w, b, gamma, beta):
        z = OPS.conv2d(x, w, b, [1, 1], [1, 1], [1, 1], 1, "auto")
        return OPS.bn_relu_train(z, gamma if affine else None, beta if affine else None, 1e-5,
                                 relu)[0]
    assert torch.autograd.gradcheck(f, (x, w, b, gamma, beta))


def _opcheck(op, args):
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result


@pytest.mark.parametrize("dev, dtype, requires_grad", per_device(
    cpu=cross([F32, F64], ["grad", "nograd"]), gpu=cross([F32, F64], ["grad", "nograd"]),
    emu=cross([F32], ["grad"])), indirect=["dev"])
def test_opcheck_fused_ops(dtype, requires_grad, on_dev):
    requires_grad = requires_grad == "grad"
    def t(*s):
        return torch.randn(*s, dtype=dtype).requires_grad_(requires_grad)
    x, w, b, gamma, beta = t(2, 4, 6, 6), t(6, 2, 3, 3), t(6), t(6), t(6)
    _opcheck(OPS.conv2d_relu.default, (x, w, b, [1, 1], [1, 1], [1, 1], 2, "auto"))
    z = t(2, 6, 5, 5)
    _opcheck(OPS.bn_relu_train.default, (z, gamma, beta, 1e-5, True))
    _opcheck(OPS.bn_relu_train.default, (z, None, None, 1e-3, False))
    z = torch.randn(2, 6, 5, 5, dtype=dtype)
    mean, invstd = torch.randn(6, dtype=dtype), torch.rand(6, dtype=dtype) + 0.5
    _opcheck(OPS.bn_relu_backward.default,
             (torch.randn_like(z), z, mean, invstd, gamma.detach(), beta.detach(), True))


@pytest.mark.parametrize("dev", COMPILABLE_DEVICES, indirect=True)  # see tests/ops/test_compile.py
def test_compile_fullgraph_train_and_eval(on_dev):
    m = cnnkern.nn.ConvBNReLU2d(3, 4, 3, padding=1)
    ref = copy.deepcopy(m)
    x = torch.randn(2, 3, 8, 8)
    cm = torch.compile(m, fullgraph=True, backend="aot_eager")
    assert_close(cm(x), ref(x))
    assert_close(m[1].running_mean, ref[1].running_mean)
    m.eval(), ref.eval()
    with torch.no_grad():
        assert_close(cm(x), ref(x))


# --- saved tensors: less than the unfused sequence ------------------------------------------

def _saved_bytes(module, x):
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x.requires_grad_())
    params = {(p.untyped_storage().data_ptr(), p.dtype, tuple(p.shape))
              for p in module.parameters()}
    saved = sum(v for k, v in seen.items() if k not in params and k[0] != x.data_ptr())
    return saved, y


def test_saves_less_than_the_unfused_sequence():
    ref, m = _pair("3x3_pad1")
    x = _input("3x3_pad1", n=4)
    ours, _ = _saved_bytes(m, x.clone())
    theirs, y = _saved_bytes(ref, x.clone())
    z_bytes = y.numel() * 4
    # Unfused: the conv output (BN's input) and the ReLU output; fused: z only (+ stats).
    assert theirs >= 2 * z_bytes
    assert ours < theirs
    assert ours <= z_bytes + 4 * 6 * 2 + 64


# --- folded cache ---------------------------------------------------------------------------

def _eval_ref(m, x):
    ref = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=m[0].bias is not None),
                        nn.BatchNorm2d(6), nn.ReLU()).to(x.dtype)
    ref.load_state_dict(m.state_dict())
    return ref.eval()(x)


def test_folded_cache_never_stale():
    m = cnnkern.nn.ConvBNReLU2d(4, 6, 3, padding=1, bias=True).eval()
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        y0 = m(x)
        assert m._fold_cache is not None
        assert_close(y0, _eval_ref(m, x))
        assert_exact(m(x), y0)  # cached: the same bits
        # in-place changes of every source
        for t in (m[0].weight, m[0].bias, m[1].weight, m[1].bias, m[1].running_mean,
                  m[1].running_var):
            t.add_(0.25)
            assert_close(m(x), _eval_ref(m, x))
        # load_state_dict
        other = cnnkern.nn.ConvBNReLU2d(4, 6, 3, padding=1, bias=True)
        other[1].running_var.fill_(3.0)
        m.load_state_dict(other.state_dict())
        assert_close(m(x), _eval_ref(m, x))
        # .to(): a new dtype refolds
        m.double()
        assert m(x.double()).dtype == torch.float64
        assert_close(m(x.double()), _eval_ref(m, x.double()))
        m.float()
        # replacing a parameter object
        m[0].weight = nn.Parameter(torch.randn_like(m[0].weight))
        assert_close(m(x), _eval_ref(m, x))
        # .data assignment
        m[1].weight.data = torch.rand(6) + 1
        assert_close(m(x), _eval_ref(m, x))
    # an optimiser step (train mode) then eval again
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.train()
    m(x).sum().backward()
    opt.step()
    m.eval()
    with torch.no_grad():
        assert_close(m(x), _eval_ref(m, x))


def test_eval_with_grad_folds_through_autograd():
    ref, m = _pair("3x3_pad1", bias=True)
    ref.eval(), m.eval()
    x = _input("3x3_pad1")
    g = torch.randn(3, 6, 9, 8)
    _check_same(ref, m, 1, [x], [g], {}, train=False)
    assert m[1].weight.grad is not None and m[0].weight.grad is not None


def test_eval_train_switching():
    ref, m = _pair("3x3_s2")
    x = _input("3x3_s2")
    for mode in (True, False, True, False, False, True):
        ref.train(mode), m.train(mode)
        with torch.no_grad():
            assert_close(m(x), ref(x))
    assert_close(m[1].running_mean, ref[1].running_mean)
    assert m[1].num_batches_tracked.item() == ref[1].num_batches_tracked.item() == 3


# --- state_dict interchange and from_modules -----------------------------------------------

def test_state_dict_keys_are_torch_sequential_keys():
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    m = cnnkern.nn.ConvBNReLU2d(3, 4, 3)
    assert list(m.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(m.state_dict())
    m.load_state_dict(ref.state_dict())
    assert isinstance(m.conv, cnnkern.nn.Conv2d) and m.bn is m[1] and isinstance(m[2], nn.ReLU)
    mb = cnnkern.nn.ConvBN2d(3, 4, 3)
    assert list(mb.state_dict()) == list(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False),
                                                       nn.BatchNorm2d(4)).state_dict())


def test_from_modules_shares_parameters_and_buffers():
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    m = cnnkern.nn.ConvBNReLU2d.from_modules(conv, bn, algo="direct")
    assert m[0].weight is conv.weight and m[0].bias is conv.bias and m[1] is bn
    assert m[0].algo == "direct"
    x = torch.randn(2, 3, 5, 5)
    m(x)
    assert bn.num_batches_tracked.item() == 1  # the shared buffers were updated
    assert isinstance(cnnkern.nn.ConvBNReLU2d.from_modules(conv, bn, relu=False),
                      cnnkern.nn.ConvBN2d)
    with pytest.raises(ValueError, match="num_features=5 but the conv has out_channels=4"):
        cnnkern.nn.ConvBNReLU2d.from_modules(conv, nn.BatchNorm2d(5))


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_errors_name_the_argument_and_value(on_dev):
    x, w = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3)
    v4, v5 = torch.ones(4), torch.ones(5)
    f = cnnkern.conv_bn_relu
    with pytest.raises(RuntimeError, match=r"bn_weight must have 4 elements .*got size \[5\]"):
        f(x, w, None, v5, v4, v4, v4, True)
    with pytest.raises(RuntimeError, match=r"running_var must have 4 elements .*got size \[5\]"):
        f(x, w, None, v4, v4, v4, v5, False)
    with pytest.raises(RuntimeError, match=r"4-D weight"):
        f(x, torch.randn(4, 3, 3), None, v4, v4, v4, v4)
    with pytest.raises(RuntimeError, match=r"3-D \(unbatched\) or 4-D .* got a 5-D input"):
        f(torch.randn(1, 2, 3, 6, 6), w, None, v4, v4, v4, v4)
    with pytest.raises(RuntimeError, match=r"input has 2 channels but weight expects 3"):
        f(torch.randn(2, 2, 6, 6), w, None, v4, v4, v4, v4, True)
    with pytest.raises(RuntimeError, match=r"input and bn_bias must have the same dtype; got "
                                           r"input torch.float32 and bn_bias torch.float64"):
        f(x, w, None, v4, v4.double(), v4, v4, True)
    with pytest.raises(RuntimeError, match=r"input and weight must have the same dtype"):
        f(x, w.double(), None, v4, v4, v4, v4, True)
    with pytest.raises(RuntimeError, match=r"input and running_mean must be on the same device"):
        f(x, w, None, v4, v4, v4.to("meta"), v4, True)
    with pytest.raises(ValueError, match=r"running_mean and running_var are needed"):
        f(x, w, None, v4, v4, None, None, False)
    with pytest.raises(RuntimeError, match=r"more than 1 value per channel"):
        f(torch.randn(1, 3, 3, 3), w, None, v4, v4, v4, v4, True)
    # the op itself (C++) names the argument too
    z = torch.randn(2, 4, 3, 3)
    with pytest.raises(RuntimeError, match=r"bn_bias must have 4 elements .*got size \[5\]"):
        OPS.bn_relu_train(z, v4, v5, 1e-5, True)
    with pytest.raises(RuntimeError, match=r"eps must be positive; got -1"):
        OPS.bn_relu_train(z, v4, v4, -1.0, True)
    with pytest.raises(RuntimeError, match=r"more than 1 value per channel"):
        OPS.bn_relu_train(z[:1, :, :1, :1], v4, v4, 1e-5, True)
    # the module: BN size vs conv out channels
    m = cnnkern.nn.ConvBNReLU2d(3, 4, 3)
    m[1] = nn.BatchNorm2d(5)
    with pytest.raises(RuntimeError, match=r"must have 4 elements .*got size \[5\]"):
        m(x)
    m.eval()
    with torch.no_grad(), pytest.raises(RuntimeError,
                                        match=r"bn_weight must have 4 elements .*got size \[5\]"):
        m(x)
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"input and bn_weight must have the "
                                                            r"same dtype; got input torch.float64"):
        cnnkern.nn.ConvBNReLU2d(3, 4, 3).eval()(x.double())


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_empty_batch_in_training_is_an_empty_output_as_torch(on_dev):
    """F.batch_norm lets an empty batch through in training (empty output, running statistics
    untouched, zero gamma/beta gradients); nn.BatchNorm2d still counts the batch."""
    torch.manual_seed(0)
    ref, m = _pair("3x3_pad1", bias=True)
    ref.train(), m.train()
    x = torch.randn(0, 4, 9, 8)
    y_ref, y = ref(x.clone().requires_grad_()), m(x.clone().requires_grad_())
    assert y.shape == y_ref.shape == (0, 6, 9, 8)
    y.sum().backward()
    y_ref.sum().backward()
    for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)  # running stats unchanged, num_batches_tracked counted
    assert torch.equal(m[1].weight.grad, ref[1].weight.grad)
    assert torch.equal(m[1].bias.grad, torch.zeros(6))


# --- determinism ----------------------------------------------------------------------------

@pytest.mark.parametrize("algo", CPU_ALGOS)
def test_bitwise_deterministic_across_runs_and_threads(algo, threads):
    case = "3x3_pad1"
    if not _can(algo, case, n=8):
        pytest.skip(f"{algo} cannot run {case}")
    x = torch.randn(8, 4, 9, 8) * 3 + 1
    g = torch.randn(8, 6, 9, 8)
    results = []
    for nt in (1, 2, 2, 1):
        threads(nt)
        torch.manual_seed(0)
        m = cnnkern.nn.ConvBNReLU2d(4, 6, 3, padding=1, bias=True, algo=algo)
        y, gx = _step(m, x, g)
        m.eval()
        with torch.no_grad():
            ye = m(x)
        results.append([y, gx, ye, m[0].weight.grad, m[0].bias.grad, m[1].weight.grad,
                        m[1].bias.grad, m[1].running_mean, m[1].running_var])
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert torch.equal(a, b)


# --- low precision: CUDA's half kernels; on the CPU every algorithm through float32 ----------
# (csrc/cpu/common/half_via_float32.h), channels_last too

LOWP = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]
LOWP_LAYOUTS = [pytest.param(torch.contiguous_format, id="nchw"),
                pytest.param(torch.channels_last, id="nhwc")]


@pytest.mark.parametrize("dev, algo, layout, dtype", per_device(
    cpu=cross(["auto", "direct", "im2col", "winograd", "winograd_f2"], LOWP_LAYOUTS, LOWP),
    gpu=cross(["auto"], LOWP_LAYOUTS[:1], LOWP)), indirect=["dev"])
def test_low_precision_training_step_error_vs_torch(algo, layout, dtype, dev):
    """float16/bfloat16 training step (statistics in float32, one rounding on store) and the
    eval forward (BN folded, ReLU in the conv's epilogue): error against a float64 run of the
    same data at most 3x that of torch's own sequence in the same dtype, output and every
    gradient."""
    ref, m = _pair("3x3_pad1", bias=True, algo=algo)
    x = _input("3x3_pad1").contiguous(memory_format=layout)
    g = torch.randn(3, 6, 9, 8).contiguous(memory_format=layout)
    runs = {}
    for name, module, dt in (("ours", m, dtype), ("torch", ref, dtype),
                             ("fp64", copy.deepcopy(ref), torch.float64)):
        module = copy.deepcopy(module).to(dev.device, dt)
        y, gx = _step(module, x.to(dev.device, dt), g.to(dev.device, dt))
        module.eval()
        with torch.no_grad():
            y_eval = module(x.to(dev.device, dt))
        runs[name] = [y, gx, y_eval] + [p.grad for p in module.parameters()]
    for i, (o, t, r) in enumerate(zip(runs["ours"], runs["torch"], runs["fp64"])):
        assert o.dtype == dtype
        err, torch_err = fp64_error_ratio(o, r, t)
        floor = torch.finfo(dtype).eps * max(1.0, r.abs().max().item())
        assert err <= 3 * torch_err + floor, (i, err, torch_err)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_bitwise_deterministic_across_runs(dev):
    m = cnnkern.nn.ConvBNReLU2d(4, 6, 3, padding=1).to(dev.device)
    x = torch.randn(8, 4, 33, 33, device=dev.device)
    g = torch.randn(8, 6, 33, 33, device=dev.device)
    r1 = _step(copy.deepcopy(m), x, g)
    dev.reorder()
    r2 = _step(copy.deepcopy(m), x, g)
    for a, b in zip(r1, r2):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
def test_eval_is_one_conv_call_with_the_relu_epilogue(on_dev):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    m = cnnkern.nn.ConvBNReLU2d(4, 6, 3, padding=1).eval()
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        m(x)  # folds and caches
        with Log() as log:
            m(x)
    assert log.ops == ["cnnkern.conv2d_relu.default"], log.ops
    mb = cnnkern.nn.ConvBN2d(4, 6, 3, padding=1).eval()
    with torch.no_grad():
        mb(x)
        with Log() as log:
            mb(x)
    assert log.ops == ["cnnkern.conv2d.default"], log.ops


# --- bn_relu_backward on the CPU, per kernel variant ------------------------------------------
# The backward's plane kernels (csrc/cpu/bn_relu/bn_relu_core_impl.h) run 8 values per vector
# step and the rest one by one; the plane sizes below give no vector step (2x3), vector steps
# only (4x4) and both (7x7, 3x5, 9x13).

BWD_SHAPES = [(3, 4, 2, 3), (2, 5, 4, 4), (4, 3, 7, 7), (2, 6, 3, 5), (2, 3, 9, 13)]


def _bn_relu_reference(z, dy, gamma, beta, relu, eps=1e-5):
    """torch's F.batch_norm (+ relu) backward in float64: (grad_z, grad_gamma, grad_beta)."""
    zt, gt, bt = (t.detach().double().requires_grad_() for t in (z, gamma, beta))
    y = F.batch_norm(zt, None, None, gt, bt, training=True, eps=eps)
    if relu:
        y = F.relu(y)
    return torch.autograd.grad(y, (zt, gt, bt), dy.double())


def _ours_backward(z, dy, gamma, beta, relu, eps=1e-5):
    _, mean, invstd, _ = OPS.bn_relu_train(z, gamma, beta, eps, relu)
    return OPS.bn_relu_backward(dy, z, mean, invstd, gamma, beta, relu)


# channels_last runs its own kernels (vectors along the channels); K = 3, 5, 6 leave no vector
# step, 12 and 19 one and a tail.
BWD_SHAPES_NHWC = [(3, 12, 2, 3), (2, 19, 4, 4), (4, 5, 7, 7)]
NCHW = pytest.param(torch.contiguous_format, id="nchw")
NHWC = pytest.param(torch.channels_last, id="channels_last")


@pytest.mark.parametrize("shape, layout", cross(
    [pytest.param(s, id="x".join(map(str, s))) for s in BWD_SHAPES], [NCHW, NHWC]) + cross(
    [pytest.param(s, id="x".join(map(str, s))) for s in BWD_SHAPES_NHWC], [NHWC]))
@pytest.mark.parametrize("relu", RELU)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_backward_op_matches_torch_per_isa(shape, layout, relu, dtype, cpu_isa):
    """grad_z, grad_gamma, grad_beta of bn_relu_backward against torch's batch_norm (+ relu)
    backward in float64; float32 at float32 tolerance; grad_z in z's layout."""
    torch.manual_seed(1)
    z = (torch.randn(shape, dtype=dtype) * 2 + 0.7).contiguous(memory_format=layout)
    dy = torch.randn(shape, dtype=dtype).contiguous(memory_format=layout)
    gamma = torch.rand(shape[1], dtype=dtype) + 0.5
    beta = torch.randn(shape[1], dtype=dtype) * 0.5
    ours = _ours_backward(z, dy, gamma, beta, relu)
    ref = _bn_relu_reference(z, dy, gamma, beta, relu)
    assert ours[0].is_contiguous(memory_format=layout)
    for name, o, r in zip(("grad_z", "grad_gamma", "grad_beta"), ours, ref):
        assert o.dtype == dtype
        assert_close(o, r, msg=name)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_backward_relu_mask_matches_the_forward_at_zero(dtype, cpu_isa):
    """The backward recomputes the ReLU mask from z (as z * scale > -shift, see
    bn_relu_core_impl.h); it must pass exactly the values whose forward output is > 0. beta is
    chosen after the statistics (which do not depend on it) so that z * scale + shift lands on
    0 and its neighbours for a quarter of the values of each channel: a mask that disagreed
    with the forward on one of them would be off by |dy * gamma * invstd|, far above rounding."""
    torch.manual_seed(2)
    N, K, H, W = 2, 3, 9, 11
    z = torch.randn(N, K, H, W, dtype=dtype)
    z0 = z[0, :, 0, 0].clone()
    near = z0[:, None] + torch.arange(-12, 13, dtype=dtype) * torch.finfo(dtype).eps * z0.abs()[:, None]
    flat = z.view(N, K, H * W)
    flat[:, :, : near.shape[1]] = near[None]
    flat[:, :, near.shape[1]: 2 * near.shape[1]] = z0[None, :, None]
    gamma = torch.rand(K, dtype=dtype) + 0.5
    _, mean, invstd, _ = OPS.bn_relu_train(z, gamma, None, 1e-5, True)
    scale = gamma * invstd
    beta = mean * scale - z0 * scale  # shift = beta - mean * scale ~ -z0 * scale
    out, mean, invstd, _ = OPS.bn_relu_train(z, gamma, beta, 1e-5, True)
    assert (out == 0).any() and (out > 0).any()
    dy = torch.randn_like(z)
    gz, _, _ = OPS.bn_relu_backward(dy, z, mean, invstd, gamma, beta, True)
    # torch's relu backward, with our forward's output as the mask, in float64
    g = torch.where(out > 0, dy, 0).double()
    zc = z.double() - mean.double()[None, :, None, None]
    M = N * H * W
    sg, sgx = g.sum((0, 2, 3)), (g * zc).sum((0, 2, 3))
    iv = invstd.double()[None, :, None, None]
    sc = (gamma.double()[None, :, None, None] * iv)
    ref = sc * (g - sg[None, :, None, None] / M - zc * iv * iv * sgx[None, :, None, None] / M)
    assert_close(gz, ref, msg="grad_z")


def test_backward_is_bitwise_the_same_for_1_and_2_threads(threads, cpu_isa):
    """Every shape class: few channels of big planes, many channels of tiny planes, planes with
    tails, channels_last; float32 and float64: the threading never changes a bit."""
    torch.manual_seed(3)
    for shape, layout in [((1, 8, 128, 130), torch.contiguous_format),
                          ((16, 40, 7, 7), torch.contiguous_format),
                          ((3, 5, 9, 13), torch.contiguous_format),
                          ((4, 20, 40, 41), torch.channels_last),
                          ((16, 40, 7, 7), torch.channels_last)]:
        for dtype in (torch.float32, torch.float64):
            z = (torch.randn(shape, dtype=dtype) + 0.3).contiguous(memory_format=layout)
            dy = torch.randn(shape, dtype=dtype).contiguous(memory_format=layout)
            gamma = torch.rand(shape[1], dtype=dtype) + 0.5
            beta = torch.randn(shape[1], dtype=dtype)
            runs = []
            for nt in (1, 2, 1):
                threads(nt)
                runs.append(_ours_backward(z, dy, gamma, beta, True))
            for r in runs[1:]:
                for a, b in zip(runs[0], r):
                    assert_exact(a, b)
