"""The `cnnkern` command: the benchmark + correctness table on the device that is here."""

from __future__ import annotations

import argparse
import sys
import time

import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64,
           "float16": torch.float16, "bfloat16": torch.bfloat16}


def _parser() -> argparse.ArgumentParser:
    from cnnkern.bench import runner

    p = argparse.ArgumentParser(
        prog="cnnkern",
        description="Time every cnnkern algorithm against PyTorch's own op (cuDNN on the GPU "
                    "with TF32 off, oneDNN on the CPU) on a layer set, with the error against it.")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda if usable)")
    p.add_argument("--layers", default="default",
                   help=f"a layer set ({', '.join(runner.layer_sets())}) or a JSON file")
    p.add_argument("--batch", type=int, default=None, help="override every layer's batch size")
    p.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    p.add_argument("--passes", default="fwd",
                   help="comma-separated: fwd, bwd_input, bwd_weight, or 'all' (default: fwd)")
    p.add_argument("--algos", default=None,
                   help="comma-separated algorithms (default: every one built for the device)")
    p.add_argument("--min-time", type=float, default=0.2,
                   help="seconds of timed runs per measurement (default: 0.2)")
    p.add_argument("--json", metavar="PATH", help="also write the rows and environment as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    return p


def main(argv=None) -> int:
    import cnnkern
    from cnnkern.bench import runner

    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = runner.default_device() if args.device == "auto" else torch.device(args.device)
    if device.type == "cuda" and not cnnkern.cuda_available():
        print("cnnkern: --device cuda, but "
              + ("no GPU is visible" if cnnkern.cuda_built() else
                 "this build has no CUDA kernels (rebuild with a CUDA toolkit)"), file=sys.stderr)
        return 2
    passes = runner.PASSES if args.passes == "all" else tuple(args.passes.split(","))
    bad = [p for p in passes if p not in runner.PASSES]
    if bad:
        print(f"cnnkern: unknown pass {bad[0]!r}; choose from {', '.join(runner.PASSES)}",
              file=sys.stderr)
        return 2
    algos = args.algos.split(",") if args.algos else cnnkern.algorithms(device.type)
    layers = runner.load_layers(args.layers)
    env = runner.environment(device)
    ref_name = "cuDNN" if device.type == "cuda" else "torch"

    print(f"cnnkern {env['cnnkern']} | torch {env['torch']} | device {env.get('gpu', device)} | "
          f"threads {env['threads']} | {args.dtype} | layers: {args.layers}", flush=True)
    start = time.time()
    rows = runner.run(layers, device, _DTYPES[args.dtype], passes, algos, args.batch,
                      args.min_time,
                      progress=lambda name: print(f"  ... {name}", file=sys.stderr, flush=True))
    print(runner.format_table(rows, ref_name))
    print(f"speedup = {ref_name} time / cnnkern time (>1: cnnkern faster); GFLOP/s on the "
          f"direct-conv count 2*N*K*C/g*R*S*P*Q; max rel err = max|ours - {ref_name}| / "
          f"max|{ref_name}|. {time.time() - start:.0f} s.")
    if args.json:
        runner.write(args.json, runner.to_json(rows, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
