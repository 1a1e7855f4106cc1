"""A model's 3x3 and strided convolutions (ResNet-50's unless --set names another), every pass
and CPU algorithm against torch, timed interleaved in one process (round-robin blocks, medians) so that load from other jobs
on a shared machine hits every candidate alike: ratios, not absolutes, are the result.

    OMP_WAIT_POLICY=passive PYTHONPATH=. python -m bench.small_planes --batch 8 1 --metric busiest

--metric wall: wall-clock time per call. On a machine loaded several times over (other jobs'
builds), wall time mostly measures how often a thread waits for a core at a barrier.
--metric busiest: the CPU time of the busiest thread of the process per call (each thread's
own CPU clock, read from outside), the call's critical path if no thread had to wait for a core:
the load hardly moves it, while an unbalanced split of the work over the threads shows up in it
exactly. It needs OMP_WAIT_POLICY=passive (set before the process starts), else threads that
spin at a barrier count their waiting as work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

import cnnkern  # registers torch.ops.cnnkern; cnnkern.tuning names the CPU

HERE = os.path.dirname(os.path.abspath(__file__))
ALGOS = ["winograd_f2", "winograd", "im2col", "direct"]
PASSES = ["fwd", "bwd_input", "bwd_weight"]


def small_plane_layers(layer_set="resnet50"):
    """The 3x3 layers and every strided layer of a model's set (bench/layers/<set>.json) but
    the 7x7 stem; `--layers` picks others by name."""
    return [l for l in set_layers(layer_set)
            if l["name"] != "conv1" and (l["R"] == 3 or l["stride"] != [1, 1])]


def set_layers(layer_set):
    with open(os.path.join(HERE, "layers", f"{layer_set}.json")) as f:
        return json.load(f)["conv2d"]


def with_env(fn, env):
    """fn run with the environment variables `env` set (for a switch the C++ side reads on
    every call, so one process can time two settings of it interleaved)."""
    if not env:
        return fn

    def call():
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return fn()
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
    return call


def parse_spec(spec):
    """"[label:]algo[@VAR=value,VAR=value...]" -> (label, algo, env); the label defaults to
    the spec itself."""
    label, _, rest = spec.rpartition(":") if ":" in spec else ("", "", spec)
    algo, _, settings = rest.partition("@")
    env = dict(s.split("=", 1) for s in settings.split(",")) if settings else {}
    return label or spec, algo, env


def candidate(layer, batch, spec, pass_):
    """The call that `spec` names (parse_spec)."""
    _, algo, env = parse_spec(spec)
    return with_env(closures(layer, batch, algo)[pass_], env)


def closures(layer, batch, algo):
    gen = torch.Generator().manual_seed(0)
    s, pd = layer["stride"], layer["padding"]
    x = torch.randn(batch, layer["C"], layer["H"], layer["W"], generator=gen)
    w = torch.randn(layer["K"], layer["C"], layer["R"], layer["S"], generator=gen)
    out = F.conv2d(x, w, None, s, pd)
    go = torch.randn(out.shape, generator=gen)
    ops, d = torch.ops.cnnkern, [1, 1]
    if algo == "torch":
        def tb(i):
            return lambda: torch.ops.aten.convolution_backward(
                go, x, w, None, s, pd, d, False, [0, 0], 1, [i == 0, i == 1, False])[i]
        return {"fwd": lambda: F.conv2d(x, w, None, s, pd), "bwd_input": tb(0), "bwd_weight": tb(1)}
    return {"fwd": lambda: ops.conv2d(x, w, None, s, pd, d, 1, algo, False),
            "bwd_input": lambda: ops.conv2d_backward_input(go, w, list(x.shape), s, pd, d, 1, algo, False),
            "bwd_weight": lambda: ops.conv2d_backward_weight(go, x, list(w.shape), s, pd, d, 1, algo, False)}


def _thread_clocks():
    """The CPU clock of every thread of this process (Linux's per-thread CPU clock id)."""
    return [((~int(tid)) << 3) | 6 for tid in os.listdir("/proc/self/task")]


def _busiest_seconds(fn, calls):
    clocks = _thread_clocks()
    before = [time.clock_gettime(c) for c in clocks]
    for _ in range(calls):
        fn()
    return max(time.clock_gettime(c) - b for c, b in zip(clocks, before))


def _wall_seconds(fn, calls):
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - t


def interleaved_ms(fns, rounds, metric="wall", block_s=0.02):
    """Median ms per call of each fn by `metric`, timed in round-robin blocks of ~block_s."""
    measure = _busiest_seconds if metric == "busiest" else _wall_seconds
    calls = {}
    for k, fn in fns.items():
        fn()  # warm-up: worker threads, scratch buffers
        calls[k] = max(1, int(block_s / max(measure(fn, 1), 1e-6)))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(measure(fn, calls[k]) / calls[k] * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", nargs="+", default=PASSES)
    ap.add_argument("--algos", nargs="+", default=ALGOS + ["auto"],
                    help='algorithms, each optionally labelled and with environment settings, '
                         'e.g. "before:auto@CNNKERN_WINOGRAD_CHUNK=16,CNNKERN_IM2COL_IMAGES=1,'
                         'CNNKERN_IM2COL_PACK=runs" (auto as before the small-plane changes)')
    ap.add_argument("--set", default="resnet50", help="layer set of bench/layers (resnet18, googlenet...)")
    ap.add_argument("--layers", nargs="*", help="layer names (default: the 3x3 and strided ones)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--metric", choices=["wall", "busiest"], default="wall")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    layers = ([l for l in set_layers(args.set) if l["name"] in args.layers] if args.layers
              else small_plane_layers(args.set))
    flags = sorted(f for f in cnnkern.tuning.cpu_flags() if f.startswith(("avx", "fma", "f16c")))
    print(f"# CPU {cnnkern.tuning.cpu_model()}, ISA {cnnkern.tuning.cpu_isa()}, flags {' '.join(flags)}")
    print(f"# load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"# torch {torch.__version__}, {args.threads} threads; ratio = torch ms / cnnkern ms "
          f"(medians of {args.rounds} interleaved rounds), metric {args.metric}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    for batch in args.batch:
        for layer in layers:
            shape = (f"{layer['C']}x{layer['H']}x{layer['W']}->{layer['K']} {layer['R']}x{layer['S']}"
                     f" s{layer['stride'][0]}")
            for pass_ in args.passes:
                fns = {"torch": closures(layer, batch, "torch")[pass_]}
                for algo in args.algos:
                    try:
                        fn = candidate(layer, batch, algo, pass_)
                        fn()
                        fns[parse_spec(algo)[0]] = fn
                    except RuntimeError:
                        pass
                ms = interleaved_ms(fns, args.rounds, args.metric)
                cells = " ".join(f"{a}={ms['torch'] / ms[a]:.2f}" for a in fns if a != "torch")
                print(f"N{batch} {layer['name']:<22} {shape:<26} {pass_:<10} torch {ms['torch']:7.2f} ms  {cells}",
                      flush=True)


if __name__ == "__main__":
    main()
