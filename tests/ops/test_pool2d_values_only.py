"""Max pooling without indices: the values-only op (torch.ops.cnnkern.max_pool2d) that
cnnkern.max_pool2d / nn.MaxPool2d run when no index is asked for and no gradient is needed, on
every backend (`dev`: the CPU, a GPU, the CUDA emulator) against torch; its own autograd
(recomputing the argmax) against torch's gradient in float64; that it makes no int64 tensor;
and the paths of the CUDA forward kernels (csrc/cuda/pool2d_forward.cuh: 16-byte channel
vectors, several outputs per thread along NCHW rows, 2-element loads for 2x2 / stride 2, the
scalar fallbacks for odd sizes and misaligned views, 32-bit and 64-bit indices), which the
average pooling forward shares."""

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from conftest import (DEVICES, OpRecorder, assert_close, assert_exact, cross, int_tensor,
                      per_device)

OPS = torch.ops.cnnkern
CL = torch.channels_last
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]
ALL_DTYPES = DTYPES + [pytest.param(torch.float16, id="f16"),
                       pytest.param(torch.bfloat16, id="bf16")]

# (shape, layout, pooling arguments): each reaches one path of the CUDA forward kernels for
# float32 (the comment); other dtypes take their own widths (float64: 2 channels / outputs per
# vector, float16/bfloat16: 8 channels), so the same list crosses paths differently for them.
PATH_CASES = [
    pytest.param((2, 3, 16, 16), "nchw", dict(kernel_size=3, stride=2, padding=1),
                 id="nchw_row_vector_k3s2p1"),        # Q = 8: 4 outputs per thread
    pytest.param((2, 3, 8, 16), "nchw", dict(kernel_size=2, stride=2),
                 id="nchw_pairs_row_vector_k2s2"),    # 2-element loads, 4 outputs per thread
    pytest.param((1, 2, 6, 10), "nchw", dict(kernel_size=2, stride=2),
                 id="nchw_pairs_scalar_q5"),          # 2-element loads, Q = 5: 1 per thread
    pytest.param((1, 2, 7, 9), "nchw", dict(kernel_size=2, stride=2, ceil_mode=True),
                 id="nchw_odd_w_no_pairs_ceil"),      # W odd: no pairs (the last window clips)
    pytest.param((2, 2, 9, 11), "nchw", dict(kernel_size=3, stride=2, padding=1),
                 id="nchw_scalar_q6"),                # Q = 6: 1 per thread (float64: 2)
    pytest.param((2, 16, 7, 9), "cl", dict(kernel_size=3, stride=2, padding=1),
                 id="cl_vector_c16"),                 # 16-byte channel vectors, every dtype
    pytest.param((1, 8, 9, 8), "cl", dict(kernel_size=3, stride=2, padding=1, dilation=2,
                                          ceil_mode=True),
                 id="cl_vector_c8_dilation_ceil"),
    pytest.param((2, 5, 7, 9), "cl", dict(kernel_size=3, stride=2, padding=1),
                 id="cl_scalar_c5"),                  # C = 5: one channel per thread
    pytest.param((1, 12, 5, 6), "cl", dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
                 id="cl_c12_rect"),                   # float32 vectors; f16/bf16 scalar
]


def _make(shape, layout, dtype, device, misaligned=False, ints=False):
    """A tensor of `shape` in `layout`; misaligned: a view starting one element into its
    storage (contiguous in the layout, so the op reads it in place from a pointer that no
    vector width divides)."""
    N, C, H, W = shape
    numel = N * C * H * W
    if ints:
        flat = int_tensor(numel + 1, lo=-20, hi=21, dtype=dtype, device=device)
    else:
        flat = torch.randn(numel + 1, device=device).to(dtype)  # distinct enough: no ties
    flat = flat[1:] if misaligned else flat[:numel]
    if layout == "cl":
        x = flat.view(N, H, W, C).permute(0, 3, 1, 2)
        assert x.is_contiguous(memory_format=CL)
    else:
        x = flat.view(shape)
    assert (x.storage_offset() == 1) == misaligned
    return x


def _every_dtype(*lists):
    return per_device(cpu=cross(*lists, DTYPES), gpu=cross(*lists, ALL_DTYPES))


MISALIGNED = [pytest.param(False, id="aligned"), pytest.param(True, id="misaligned")]


@pytest.mark.parametrize("dev, shape, layout, kw, misaligned, dtype",
                         _every_dtype(PATH_CASES, MISALIGNED), indirect=["dev"])
def test_values_only_matches_torch(shape, layout, kw, misaligned, dtype, dev):
    x = _make(shape, layout, dtype, dev.device, misaligned)
    x[..., 0, 1] = float("nan")  # NaN wins its windows, as in torch
    with torch.no_grad():
        out = cnnkern.max_pool2d(x, **kw)
        ref = F.max_pool2d(x, **kw)
    assert_exact(out, ref, equal_nan=True)
    # The layout follows the input's, as torch's does.
    assert out.is_contiguous(memory_format=CL if layout == "cl" else torch.contiguous_format)
    # The with-indices op (on CUDA its own kernel, which carries the index): same values.
    out_i, idx = OPS.max_pool2d_with_indices(x, *_op_args(kw))
    _, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    assert_exact(out_i, ref, equal_nan=True)
    assert_exact(idx, ref_idx)


@pytest.mark.parametrize("dev, shape, layout, kw, dtype", _every_dtype(PATH_CASES),
                         indirect=["dev"])
def test_values_only_nan_and_infinities_match_torch_float64(shape, layout, kw, dtype, dev):
    # Dense specials: windows where a NaN comes before, after or between larger values and
    # infinities (a NaN, once taken, stays: the values-only CUDA kernel keeps no index that
    # could hide a mistake there), against torch in float64 on the CPU.
    x = _make(shape, layout, dtype, dev.device)
    g = torch.Generator().manual_seed(17)
    u = torch.rand(shape, generator=g).to(dev.device)
    x[u < 0.12] = float("nan")
    x[(u >= 0.12) & (u < 0.18)] = float("inf")
    x[(u >= 0.18) & (u < 0.24)] = float("-inf")
    with torch.no_grad():
        out = cnnkern.max_pool2d(x, **kw)
    ref = F.max_pool2d(x.detach().cpu().double(), **kw)
    assert torch.isnan(ref).any() and not torch.isnan(ref).all()
    assert_exact(out.cpu().double(), ref, equal_nan=True)


@pytest.mark.parametrize("dev, shape, layout, kw, misaligned, dtype",
                         _every_dtype([c for c in PATH_CASES if "dilation" not in c.id],
                                      MISALIGNED), indirect=["dev"])
def test_avg_pool_forward_paths_match_torch(shape, layout, kw, misaligned, dtype, dev):
    # Integer-valued inputs: the window sums are exact, so only the one division rounds.
    x = _make(shape, layout, dtype, dev.device, misaligned, ints=True)
    for cip in (True, False):
        out = cnnkern.avg_pool2d(x, **kw, count_include_pad=cip)
        ref = F.avg_pool2d(x.double(), **kw, count_include_pad=cip).to(dtype)
        assert_close(out, ref, dtype=dtype)


def _op_args(kw):
    def pair(v):
        return list(v) if isinstance(v, (tuple, list)) else [v, v]
    k = pair(kw["kernel_size"])
    return (k, pair(kw.get("stride", k)), pair(kw.get("padding", 0)),
            pair(kw.get("dilation", 1)), kw.get("ceil_mode", False))


@pytest.mark.parametrize("dev, shape, layout, kw", per_device(
    gpu=PATH_CASES, emu=[PATH_CASES[0], PATH_CASES[1], PATH_CASES[5], PATH_CASES[7]]),
    indirect=["dev"])
def test_cuda_64bit_index_path_matches_torch(shape, layout, kw, dev, monkeypatch):
    # The 32-bit paths serve every shape under 2^31 elements; CNNKERN_POOL_INDEX64 sends the
    # launch to the 64-bit fallback, so it runs on shapes a test can afford.
    monkeypatch.setenv("CNNKERN_POOL_INDEX64", "1")
    x = _make(shape, layout, torch.float32, dev.device)
    ref, ref_idx = F.max_pool2d(x, **kw, return_indices=True)
    out, idx = OPS.max_pool2d_with_indices(x, *_op_args(kw))
    assert_exact(out, ref)
    assert_exact(idx, ref_idx)
    assert_exact(OPS.max_pool2d(x, *_op_args(kw)), ref)
    assert_close(cnnkern.avg_pool2d(x, **{k: v for k, v in kw.items() if k != "dilation"}),
                 F.avg_pool2d(x, **{k: v for k, v in kw.items() if k != "dilation"}))


GRAD_CASES = [PATH_CASES[i] for i in (0, 1, 4, 5, 6, 7)]


@pytest.mark.parametrize("dev, shape, layout, kw", per_device(cpu=GRAD_CASES, gpu=GRAD_CASES),
                         indirect=["dev"])
def test_values_only_op_gradient_is_torchs(shape, layout, kw, dev):
    # Called directly on an input that needs a gradient, the values-only op recomputes the
    # argmax in its backward: the gradient must be torch's exactly, ties included (small
    # integers tie often; torch keeps the first maximum of each window).
    x = _make(shape, layout, torch.float64, dev.device, ints=True)
    x.clamp_(-2, 2)
    xa = x.detach().clone().requires_grad_(True)
    xb = x.detach().clone().requires_grad_(True)
    out = OPS.max_pool2d(xa, *_op_args(kw))
    ref = F.max_pool2d(xb, **kw)
    g = int_tensor(*ref.shape, dtype=torch.float64, device=dev.device)
    out.backward(g)
    ref.backward(g)
    assert_exact(out, ref)
    assert_exact(xa.grad, xb.grad)
    assert xa.grad.stride() == xb.grad.stride()


def test_values_only_op_gradcheck():
    x = torch.randn(1, 2, 7, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: OPS.max_pool2d(t, [3, 2], [2, 2], [1, 1], [1, 1],
                                                             True), (x,))


def _bytes_allocated_by(fn, device):
    """Bytes allocated inside the max-pool op call of fn(): the profiler's memory events under
    the op's event, its children included (the allocations are at::empty calls it makes; in
    the emulator cnnkern::max_pool2d wraps cnnkern_emu::max_pool2d, hence the largest)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as prof:
        result = fn()
    attr = "device_memory_usage" if device.type == "cuda" else "cpu_memory_usage"
    usage = [getattr(e, attr) for e in prof.key_averages()
             if e.key.split("::")[-1] in ("max_pool2d", "max_pool2d_with_indices")]
    assert usage, [e.key for e in prof.key_averages()]
    return result, max(usage)


@pytest.mark.parametrize("dev", DEVICES, indirect=True)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_eval_max_pool_allocates_no_index_tensor(layout, dev):
    x = _make((2, 16, 12, 12), layout, torch.float32, dev.device)
    with torch.no_grad():
        out, mem = _bytes_allocated_by(lambda: cnnkern.max_pool2d(x, 3, 2, 1), dev.device)
        assert mem == out.numel() * out.element_size()  # the output, and nothing else
        # ...where the with-indices op also makes the int64 indices (what the check would see):
        (o, i), mem_i = _bytes_allocated_by(
            lambda: cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True), dev.device)
    assert mem_i == o.numel() * (o.element_size() + 8)


def _cnnkern_ops(rec):
    return [n for n in rec.names if n.startswith("cnnkern::")]


def test_functional_takes_the_values_only_op_when_no_gradient_is_needed():
    x = torch.randn(1, 3, 9, 9)
    pool = cnnkern.nn.MaxPool2d(3, 2, 1).eval()
    for call in (lambda: cnnkern.max_pool2d(x, 3, 2, 1), lambda: pool(x),
                 lambda: cnnkern.max_pool2d(x[0], 3, 2, 1)):  # unbatched too
        with OpRecorder() as rec:
            out = call()
        assert _cnnkern_ops(rec) == ["cnnkern::max_pool2d"], rec.names
        assert_exact(out, F.max_pool2d(x if out.dim() == 4 else x[0], 3, 2, 1))
    # An input that needs a gradient: the indices are made in the forward (torch's choice), so
    # the backward is one gather...
    xg = x.clone().requires_grad_(True)
    with OpRecorder() as rec:
        pool(xg).sum().backward()
    assert rec.names.count("cnnkern::max_pool2d_with_indices") == 1, rec.names
    assert "cnnkern::max_pool2d" not in rec.names
    # ...but not under no_grad, nor when the caller asks for the indices (then they are made).
    with torch.no_grad(), OpRecorder() as rec:
        pool(xg)
    assert _cnnkern_ops(rec) == ["cnnkern::max_pool2d"], rec.names
    with OpRecorder() as rec:
        cnnkern.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert _cnnkern_ops(rec) == ["cnnkern::max_pool2d_with_indices"], rec.names
