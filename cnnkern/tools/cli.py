"""The `cnnkern` command.

    cnnkern [bench options]      the benchmark + correctness table on the device that is here
    cnnkern check MODEL ...      a reference model against its plain-torch twin
    cnnkern summary MODEL        per-layer shapes, weights, MACs and conv algorithms
    cnnkern train-digits ...     LeNet-5 on scikit-learn's handwritten digits
    cnnkern sass-report ...      static performance report of the CUDA kernels (no GPU needed)
    cnnkern models ...           whole torchvision models: torch vs cnnkern (+ torch.compile,
                                 ONNX Runtime), eval and training, time by layer kind
    cnnkern auto-regret ...      per layer and pass: auto's time / the fastest algorithm's
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _parser() -> argparse.ArgumentParser:
    from cnnkern.bench import runner

    p = argparse.ArgumentParser(
        prog="cnnkern",
        description="Time every cnnkern algorithm against PyTorch's own op (cuDNN on the GPU, "
                    "TF32 off unless --tf32, which also allows cnnkern's own TF32 path; oneDNN on "
                    "the CPU) on a layer set, with the error "
                    "against it and against a float64 reference. Subcommands: check, summary, "
                    "train-digits, sass-report, models, auto-regret (each with --help).")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda if usable)")
    p.add_argument("--layers", default="default",
                   help=f"a layer set ({', '.join(runner.layer_sets())}) or a JSON file")
    p.add_argument("--batch", type=int, default=None, help="override every layer's batch size")
    p.add_argument("--dtypes", "--dtype", default="float32",
                   help=f"comma-separated: {', '.join(runner.DTYPES)} (default: float32)")
    p.add_argument("--layouts", default="nchw",
                   help="comma-separated: nchw, channels_last (default: nchw)")
    p.add_argument("--passes", default="fwd",
                   help="comma-separated: fwd, bwd_input, bwd_weight, or 'all' (default: fwd)")
    p.add_argument("--algos", default=None,
                   help="comma-separated algorithms (default: every one built for the device); "
                        "auto, the default the API runs, is always timed too")
    p.add_argument("--min-time", type=float, default=0.2,
                   help="seconds of timed runs per measurement (default: 0.2)")
    p.add_argument("--tf32", action="store_true",
                   help="let cuDNN and cnnkern (cnnkern.backends.allow_tf32) use TF32 for "
                        "float32: a like-for-like comparison; recorded in the JSON")
    p.add_argument("--json", metavar="PATH", help="also write rows, peaks and environment as JSON")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    p.add_argument("--plot", metavar="DIR", help="write speedup and roofline PNGs to DIR")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the run")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress (a bar on a terminal, else a line per layer on stderr)")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _COMMANDS:
        return _COMMANDS[argv[0]](argv[1:])
    return bench_main(argv)


def _choices(text: str, allowed, what: str):
    values = list(allowed) if text == "all" else text.split(",")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")
    return values


def bench_main(argv) -> int:
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
    try:
        passes = _choices(args.passes, runner.PASSES, "pass")
        dtypes = [runner.DTYPES[d] for d in _choices(args.dtypes, runner.DTYPES, "dtype")]
        layouts = _choices(args.layouts, runner.LAYOUTS, "layout")
    except ValueError as e:
        print(f"cnnkern: {e}", file=sys.stderr)
        return 2
    built = cnnkern.algorithms(device.type)
    algos = runner.with_auto(args.algos.split(",") if args.algos else built)
    layers = runner.load_layers(args.layers)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    with cnnkern.backends.tf32(args.tf32):  # this thread, for the run; restored after it
        return _bench_run(args, device, passes, dtypes, layouts, algos, layers)


def _bench_run(args, device, passes, dtypes, layouts, algos, layers) -> int:
    import os

    from cnnkern.bench import peaks as bench_peaks
    from cnnkern.bench import report, runner
    from cnnkern.tools.console import echo, render

    env = runner.environment(device)
    ref_name = "cuDNN" if device.type == "cuda" else "torch"
    where = env.get("gpu") or f"cpu ({env['cpu']})"
    threads = env["threads"]
    echo(render(f"cnnkern {env['cnnkern']} | torch {env['torch']} | {where} | "
                f"{threads} thread{'' if threads == 1 else 's'} | {env['date']}",
                f"layers: {args.layers} | {args.dtypes} | {args.layouts} | "
                f"passes: {','.join(passes)}",
                f"algos: {', '.join(algos)} (auto: the default, always timed)"))
    start = time.time()
    peaks, sources = bench_peaks.measure(device, dtypes)
    echo(render(*report.peak_lines(peaks, sources)))
    rows, _ = runner.run(layers, device, dtypes, layouts, passes, algos, args.batch,
                         args.min_time, progress=not args.no_progress, peaks=peaks)
    echo(report.format_report(rows, ref_name, time.time() - start))
    if args.json:
        runner.write(args.json, runner.to_json(rows, env, peaks, sources))
    if args.markdown:
        runner.write(args.markdown, runner.format_markdown(rows, ref_name))
    if args.plot:
        from cnnkern.bench import plots

        os.makedirs(args.plot, exist_ok=True)
        name = os.path.splitext(os.path.basename(args.layers))[0]
        title = f"{name} on {env.get('gpu', device)} ({args.dtypes})"
        plots.speedup_chart(rows, os.path.join(args.plot, f"speedup_{name}.png"), title, ref_name)
        plots.roofline_chart(rows, peaks, os.path.join(args.plot, f"roofline_{name}.png"), title,
                             sources)
    return 0


def _model_arg(p: argparse.ArgumentParser):
    import cnnkern

    p.add_argument("model", choices=sorted(cnnkern.models.MODELS))


def check_main(argv) -> int:
    import cnnkern
    from cnnkern.tools import check
    from cnnkern.tools.console import add_row, echo, render, table

    p = argparse.ArgumentParser(prog="cnnkern check", description=check.__doc__.split("\n\n")[0])
    _model_arg(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--algos", default=None,
                   help="comma-separated (default: auto and every algorithm built)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=None, help="input height/width (default: model's)")
    p.add_argument("--no-layers", action="store_true", help="only the model-level lines")
    p.add_argument("--bench", action="store_true",
                   help="also time forward and a training step against the torch twin")
    args = p.parse_args(argv)
    device = ("cuda" if cnnkern.cuda_available() else "cpu") if args.device == "auto" else args.device
    algos = args.algos.split(",") if args.algos else ["auto"] + cnnkern.algorithms(device)
    for algo in algos:
        results = check.check_model(args.model, algo, device, args.batch, args.size)
        echo(check.format_results(results, per_layer=not args.no_layers))
    if args.bench:
        ref = {t: check.time_model(args.model, "auto", "torch", device, args.batch, args.size, t)
               for t in (False, True)}
        t = table(["algo", "run", "images/s", "torch\nimages/s", "ratio"],
                  right=["images/s", "torch\nimages/s", "ratio"],
                  title=f"{args.model} timing on {device}, batch {args.batch} (median of 3); "
                        f"ratio = torch time / cnnkern time")
        for algo in algos:
            for train in (False, True):
                s = check.time_model(args.model, algo, "cnnkern", device, args.batch, args.size,
                                     train)
                add_row(t, [algo, "train step" if train else "forward",
                            f"{args.batch / s:.1f}", f"{args.batch / ref[train]:.1f}",
                            f"{ref[train] / s:.2f}x"])
        echo("\n" + render(t))
    return 0


def summary_main(argv) -> int:
    import cnnkern
    from cnnkern.tools import check, summary
    from cnnkern.tools.console import echo

    p = argparse.ArgumentParser(prog="cnnkern summary", description=summary.__doc__.split("\n\n")[0])
    _model_arg(p)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--algo", default="auto")
    args = p.parse_args(argv)
    model = cnnkern.models.MODELS[args.model](algo=args.algo)
    shape = check.input_shape(args.model, args.size)
    echo(summary.format_summary(summary.summarize(model, shape),
                                f"{args.model}, input {'x'.join(map(str, shape))}"))
    return 0


def train_digits_main(argv) -> int:
    from cnnkern.models import digits

    p = argparse.ArgumentParser(prog="cnnkern train-digits", description=digits.__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--algo", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default="digits_training.png", help="PNG of loss and accuracy")
    p.add_argument("--no-torch", action="store_true", help="skip the plain-torch comparison run")
    args = p.parse_args(argv)
    runs = [digits.train_lenet_digits("cnnkern", args.algo, args.epochs, seed=args.seed,
                                      progress=True)]
    if not args.no_torch:
        runs.append(digits.train_lenet_digits("torch", epochs=args.epochs, seed=args.seed,
                                              progress=True))
    for r in runs:
        print(f"{r.backend:8s} held-out accuracy {r.test_accuracy:.4f} in {r.seconds:.1f} s; "
              f"final loss {r.train_loss[-1]:.4f}")
    if len(runs) == 2:
        gap = max(abs(a - b) / b for a, b in zip(runs[0].train_loss, runs[1].train_loss))
        print(f"largest relative gap between the two loss curves: {gap:.2e}")
    digits.plot_training(runs, args.plot)
    print(f"plot: {args.plot}")
    return 0


def sass_report_main(argv) -> int:
    from cnnkern.bench import sass_report

    return sass_report.main(argv)


def models_main(argv) -> int:
    from cnnkern.bench import models

    return models.main(argv)


def auto_regret_main(argv) -> int:
    from cnnkern.bench import auto_regret

    return auto_regret.main(argv)


_COMMANDS = {"bench": bench_main, "check": check_main, "summary": summary_main,
             "train-digits": train_digits_main, "sass-report": sass_report_main,
             "models": models_main, "auto-regret": auto_regret_main}


if __name__ == "__main__":
    sys.exit(main())
