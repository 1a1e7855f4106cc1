"""Reliability: determinism (run to run, any thread count), concurrent callers, no memory
growth, whole-model torch.compile, CUDA graph capture, and DistributedDataParallel training."""

import gc
import os
import threading

import pytest
import torch
import torch.nn.functional as F

import cnnkern
from cnnkern import models

ALGOS = cnnkern.algorithms("cpu")


def _conv_all(x, w, b, algo, **kw):
    """Output and the three gradients of one conv call, for bitwise comparisons."""
    xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, w, b))
    out = cnnkern.conv2d(xs, ws, bs, algo=algo, **kw)
    out.backward(torch.ones_like(out))
    return [out.detach(), xs.grad, ws.grad, bs.grad]


def _pools_all(x):
    xs = x.detach().clone().requires_grad_()
    outs = [cnnkern.max_pool2d(xs, 3, 2, 1), cnnkern.avg_pool2d(xs, 3, 2, 1),
            cnnkern.adaptive_avg_pool2d(xs, (5, 3))]
    sum(o.sum() for o in outs).backward()
    return [o.detach() for o in outs] + [xs.grad]


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("algo", ALGOS)
def test_conv_is_bitwise_deterministic_across_runs_and_thread_counts(algo, threads):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 23, 19, generator=gen)
    w = torch.randn(24, 16, 3, 3, generator=gen)
    b = torch.randn(24, generator=gen)
    if not cnnkern.can_implement(x, w, b, padding=1, algo=algo)[0]:
        pytest.skip(f"{algo} cannot run this shape")
    results = []
    for n in (1, 2, 1, 2):
        torch.set_num_threads(n)
        results.append(_conv_all(x, w, b, algo, padding=1))
    for other in results[1:]:
        for a, r in zip(other, results[0]):
            assert torch.equal(a, r)


def test_pooling_is_bitwise_deterministic_across_thread_counts(threads):
    x = torch.randn(4, 6, 29, 31, generator=torch.Generator().manual_seed(1))
    torch.set_num_threads(1)
    one = _pools_all(x)
    torch.set_num_threads(2)
    for a, r in zip(_pools_all(x), one):
        assert torch.equal(a, r)


def test_concurrent_callers_get_correct_results():
    gen = torch.Generator().manual_seed(2)
    cases = [(torch.randn(2, 8, 17 + i, 15, generator=gen), torch.randn(6, 8, 3, 3, generator=gen))
             for i in range(6)]
    errors = []

    def work(i):
        try:
            x, w = cases[i % len(cases)]
            for _ in range(5):
                torch.testing.assert_close(cnnkern.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
                torch.testing.assert_close(cnnkern.max_pool2d(x, 2), F.max_pool2d(x, 2))
                with cnnkern.autotuning():  # the shared cache, under its lock
                    # autotune may pick Winograd, whose float32 error is larger by design
                    ref = F.conv2d(x, w)
                    torch.testing.assert_close(cnnkern.conv2d(x, w), ref, rtol=0,
                                               atol=2e-3 * ref.abs().max().item())
        except Exception as e:  # noqa: BLE001 - reported below with the thread's index
            errors.append((i, repr(e)))

    pool = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cnnkern.tuning.clear()
    assert not errors


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under AddressSanitizer freed memory waits in its quarantine, so "
                           "resident memory grows without a leak")
def test_repeated_calls_do_not_grow_memory():
    x = torch.randn(4, 16, 32, 32, requires_grad=True)
    w = torch.randn(16, 16, 3, 3, requires_grad=True)

    def step():
        y = cnnkern.max_pool2d(cnnkern.conv2d(x, w, padding=1), 2)
        y = cnnkern.adaptive_avg_pool2d(cnnkern.avg_pool2d(y, 2), 1)
        y.sum().backward()
        x.grad = w.grad = None

    for _ in range(20):  # warm-up: allocator caches, thread pools
        step()
    gc.collect()
    before = _rss_bytes()
    for _ in range(300):
        step()
    gc.collect()
    grown = _rss_bytes() - before
    # 300 iterations each allocate ~1 MB: any per-call leak would show as >= 300 KB
    assert grown < 8 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MB"


def test_no_threads_left_behind():
    before = threading.active_count()
    for _ in range(3):
        cnnkern.conv2d(torch.randn(2, 4, 9, 9), torch.randn(4, 4, 3, 3))
    assert threading.active_count() == before


def test_compile_fullgraph_resnet_matches_eager():
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    model.train()
    out = compiled(x)
    out.sum().backward()
    grad = model.conv1.weight.grad.clone()
    model.zero_grad()
    model(x).sum().backward()
    torch.testing.assert_close(grad, model.conv1.weight.grad, rtol=1e-4, atol=1e-5)


# GPU only, these two: CUDA graphs and streams have no counterpart in the CUDA emulator (its
# launches are synchronous, and its routing of ops is per Python thread).
@pytest.mark.cuda
@pytest.mark.skipif(not cnnkern.cuda_available(), reason="needs a CUDA GPU and cnnkern's CUDA kernels")
def test_cuda_graph_capture_replays_a_cnnkern_model():
    model = models.lenet5().cuda().eval()
    static_x = torch.randn(8, 1, 32, 32, device="cuda")
    with torch.no_grad():
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            model(static_x)  # warm-up on a side stream, as torch.cuda.graphs requires
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = model(static_x)
        for _ in range(3):
            new_x = torch.randn_like(static_x)
            static_x.copy_(new_x)
            graph.replay()
            torch.testing.assert_close(static_y, model(new_x))


@pytest.mark.cuda
@pytest.mark.skipif(not cnnkern.cuda_available(), reason="needs a CUDA GPU and cnnkern's CUDA kernels")
def test_threads_on_separate_cuda_streams_get_correct_results(monkeypatch):
    """Every kernel launches on the caller's current stream: threads each on their own stream,
    all algorithms and passes at once, match cuDNN computed afterwards on the default stream."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    gen = torch.Generator(device="cuda").manual_seed(3)
    x = torch.randn(4, 32, 28, 28, device="cuda", generator=gen)
    w = torch.randn(32, 32, 3, 3, device="cuda", generator=gen) / 17
    algos = cnnkern.algorithms("cuda")
    results, errors = {}, []

    def work(i):
        try:
            stream = torch.cuda.Stream()
            with torch.cuda.stream(stream):
                xi, wi = (x * (i + 1)).requires_grad_(), w.clone().requires_grad_()
                for _ in range(3):
                    y = cnnkern.conv2d(xi, wi, padding=1, algo=algos[i % len(algos)])
                    gx, gw = torch.autograd.grad(cnnkern.max_pool2d(y, 2).sum(), (xi, wi))
            stream.synchronize()
            results[i] = (y.detach(), gx, gw)
        except Exception as e:  # noqa: BLE001 - reported below with the thread's index
            errors.append((i, repr(e)))

    pool = [threading.Thread(target=work, args=(i,)) for i in range(2 * len(algos))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    for i, (y, gx, gw) in results.items():
        xi, wi = (x * (i + 1)).requires_grad_(), w.clone().requires_grad_()
        ref = F.conv2d(xi, wi, padding=1)
        rx, rw = torch.autograd.grad(F.max_pool2d(ref, 2).sum(), (xi, wi))
        tol = dict(rtol=1e-3, atol=1e-3 * (i + 1))  # winograd F(4x4)'s float32 error included
        torch.testing.assert_close(y, ref.detach(), **tol)
        torch.testing.assert_close(gx, rx, **tol)
        torch.testing.assert_close(gw, rw, rtol=1e-3, atol=1e-2 * (i + 1))


def _ddp_worker(rank, world, port, batch, steps, out_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(models.lenet5())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = batch
    shard = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x[shard]), y[shard]).backward()
        opt.step()
    if rank == 0:
        torch.save(model.module.state_dict(), out_path)
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one_process_on_the_combined_batch(tmp_path):
    import torch.multiprocessing as mp

    gen = torch.Generator().manual_seed(3)
    batch = (torch.randn(8, 1, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen))
    steps = 3
    out_path = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), batch, steps, out_path), nprocs=2, join=True)

    torch.manual_seed(0)
    single = models.lenet5()
    opt = torch.optim.SGD(single.parameters(), lr=0.05)
    for _ in range(steps):  # the mean loss over the combined batch = DDP's averaged gradients
        opt.zero_grad()
        F.cross_entropy(single(batch[0]), batch[1]).backward()
        opt.step()
    ddp_state = torch.load(out_path)
    for name, p in single.state_dict().items():
        torch.testing.assert_close(ddp_state[name], p, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("algo", ALGOS)
def test_nan_and_inf_propagate_like_torch(algo):
    x = torch.randn(2, 3, 9, 9)
    x[0, 1, 4, 4] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    x[1, 0, 8, 8] = -float("inf")
    w = torch.randn(4, 3, 3, 3)
    if not cnnkern.can_implement(x, w, padding=1, algo=algo)[0]:
        pytest.skip(f"{algo} cannot run this shape")
    got, want = cnnkern.conv2d(x, w, padding=1, algo=algo), F.conv2d(x, w, padding=1)
    if algo.startswith("winograd"):
        # A Winograd tile mixes its inputs (inf - inf = NaN), so a non-finite input spoils
        # its whole output tile: every output torch makes non-finite must be non-finite here,
        # and the other tiles stay exact to Winograd's float32 error.
        assert not (~want.isfinite() & got.isfinite()).any()
        both = want.isfinite() & got.isfinite()
        assert both.float().mean() > 0.5
        torch.testing.assert_close(got[both], want[both], rtol=0, atol=1e-3 * want[both].abs().max())
    else:
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.isinf(), want.isinf())
        finite = want.isfinite()
        torch.testing.assert_close(got[finite], want[finite])
    for pool in ((cnnkern.max_pool2d, F.max_pool2d), (cnnkern.avg_pool2d, F.avg_pool2d)):
        torch.testing.assert_close(pool[0](x, 3, 2, 1), pool[1](x, 3, 2, 1), equal_nan=True)


@pytest.mark.parametrize("kw", [
    dict(padding=6),                  # padding far larger than the (1x1) input
    dict(padding=(1, 7), stride=(1, 5)),
    dict(padding=3, dilation=3),
])
def test_edge_sizes_one_pixel_one_channel_huge_padding(kw):
    x = torch.randn(2, 1, 1, 1, dtype=torch.float64)  # 1x1 images, one channel
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    for algo in ALGOS:
        if cnnkern.can_implement(x, w, **kw, algo=algo)[0]:
            torch.testing.assert_close(cnnkern.conv2d(x, w, algo=algo, **kw), F.conv2d(x, w, **kw))
    assert torch.autograd.gradcheck(lambda a, b: cnnkern.conv2d(a, b, **kw),
                                    (x.requires_grad_(), w.requires_grad_()))


@pytest.mark.skipif(os.environ.get("CNNKERN_LARGE_TESTS") != "1",
                    reason="needs ~20 GB and minutes; run with CNNKERN_LARGE_TESTS=1")
def test_tensors_past_2_pow_31_elements():
    # 2^31 + 2^20 elements: any 32-bit index in the kernels would wrap and read out of bounds
    x = torch.empty(1, 2**11 + 1, 2**10, 2**10)
    x.normal_()
    got = cnnkern.max_pool2d(x, 2)
    assert torch.equal(got, F.max_pool2d(x, 2))
    last = x[:, -1:].clone()  # the plane past 2^31 elements, pooled on its own
    assert torch.equal(got[:, -1:], F.max_pool2d(last, 2))
    w = torch.randn(1, x.shape[1], 1, 1)
    torch.testing.assert_close(cnnkern.conv2d(x, w), F.conv2d(x, w), rtol=1e-4, atol=1e-3)
