"""Whole torchvision models on the CPU: eager torch against cnnkern.convert, with torch.compile
and ONNX Runtime beside them, and where the time goes (issue 16, "whole models first").

    python -m bench.models                       # the default models, batch 8, 224x224, 2 threads
    python -m bench.models --models resnet18,mobilenet_v2 --json out.json
    python -m bench.models --report out.json     # the tables again, from the saved data
    cnnkern models --batch 1 --size 64 --min-time 0 --no-compile     # the same, as a subcommand

Per model (random weights, nothing downloaded; BatchNorm statistics set from one pass on the
input, model_engines.calibrate_batch_norm says why), in ONE process:

- eval: torch, cnnkern (the same weights through cnnkern.convert), torch.compile of the torch
  model and ONNX Runtime, forward under no_grad; then
- train: torch and cnnkern, one training step (forward + cross-entropy + backward) each;

within each phase the engines take turns, one call each per round (load from other processes
hits them alike), for at least --min-reps rounds and --min-time seconds; the figure is each
engine's median. Ratio = torch time / cnnkern time (> 1: cnnkern is faster). Then --profile-reps
profiled calls of torch and of cnnkern per phase, the median one of them split into layer
kinds (bench/layer_kinds.py says how; the kinds sum to the profiled total, and the table says
so).

The geomeans are checked against the issue's targets: eval >= 1.5x, training >= 1.3x, no model
below 1.0x in either.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

import cnnkern
from cnnkern.tools.console import Footnotes, Progress, add_row, echo, render, table
from . import layer_kinds, model_engines, runner
from .model_engines import Engine

TARGETS = {"eval": 1.5, "train": 1.3}  # geomean of torch/cnnkern; and every model >= FLOOR
FLOOR = 1.0
SUM_TOLERANCE = 0.01  # the kinds may differ from the profiled total by this fraction


def time_interleaved(fns: Dict[str, Callable[[], object]], min_time: float,
                     min_reps: int) -> Dict[str, List[float]]:
    """Seconds of each call: rounds of one call per engine, in turn, until there have been
    min_reps rounds and the rounds have lasted min_time seconds (the engines' calls together,
    so that a fast engine beside a slow one does not need hundreds of rounds). The caller has
    warmed them up."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    rounds, spent = 0, 0.0
    while rounds < min_reps or spent < min_time:
        rounds += 1
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            spent += times[name][-1]
    return times


def inputs(batch: int, size: int):
    """The images and labels every engine gets (fixed seeds: the tests rebuild them)."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(2))
    return x, labels


def _rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref|: how far an engine's logits are from torch's."""
    return float((out.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30))


def _phase(engines: List[Engine], args, progress: Progress, label: str) -> dict:
    """Warms up and times the runnable engines; their medians (ms), raw times and notes."""
    runnable = {e.name: e.fn for e in engines if e.fn is not None}
    progress.step(label)
    for fn in runnable.values():
        fn()
    times = time_interleaved(runnable, args.min_time, args.min_reps)
    out = {}
    for e in engines:
        entry = {"note": e.note, **e.info}
        if e.fn is not None:
            entry["median_ms"] = statistics.median(times[e.name]) * 1e3
            entry["times_ms"] = [t * 1e3 for t in times[e.name]]
        out[e.name] = entry
    return out


def measure_model(name: str, args, progress: Progress) -> dict:
    """Everything measured on one model (the JSON's "models" entries)."""
    torch_eval = model_engines.build_model(name)
    x, labels = inputs(args.batch, args.size)
    model_engines.calibrate_batch_norm(torch_eval, x)
    torch_train = copy.deepcopy(torch_eval)  # the same weights and statistics
    result = {"model": name, "params": sum(p.numel() for p in torch_eval.parameters())}

    # eval: the four engines, checked against torch's logits first
    progress.step(f"{name}: convert, compile, export")
    evals = [Engine("torch", model_engines.eval_step(torch_eval, x)),
             Engine("cnnkern", model_engines.eval_step(cnnkern.convert(torch_eval, args.algo), x))]
    evals.append(Engine("torch.compile", None, "torch.compile: not run (--no-compile)")
                 if args.no_compile else
                 model_engines.compiled_eval(torch_eval, x, args.compile_timeout))
    evals.append(Engine("onnxruntime", None, "ONNX Runtime: not run (--no-onnxruntime)")
                 if args.no_onnxruntime else
                 model_engines.onnxruntime_eval(torch_eval, x, torch.get_num_threads()))
    ref = evals[0].fn()
    result["eval_logits_abs_max"] = float(ref.abs().max())  # ~0: activations vanished
    for e in evals[1:]:
        if e.fn is not None:
            e.info["max_rel_err_vs_torch"] = _rel_err(e.fn(), ref)
    result["eval"] = _phase(evals, args, progress, f"{name}: eval")
    result["eval_kinds"] = {e.name: layer_kinds.profile_kinds(e.fn, args.profile_reps)
                              for e in evals[:2]}
    del evals, ref
    gc.collect()

    if not args.no_train:
        trains = [Engine("torch", model_engines.train_step(torch_train, x, labels)),
                  Engine("cnnkern", model_engines.train_step(cnnkern.convert(torch_train, args.algo),
                                                             x, labels))]
        for e in trains:  # the first step's loss: the same weights, inputs and labels
            e.info["loss"] = float(e.fn())
        result["train"] = _phase(trains, args, progress, f"{name}: train")
        result["train_kinds"] = {e.name: layer_kinds.profile_kinds(e.fn, args.profile_reps)
                              for e in trains}
        del trains
    del torch_eval, torch_train
    gc.collect()
    # how busy the machine was while this model ran (other processes' load skews the times)
    result["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    for phase in ("eval", "train"):
        if phase in result:
            ms = {k: v.get("median_ms") for k, v in result[phase].items()}
            result[f"{phase}_ratio"] = ms["torch"] / ms["cnnkern"]
    return result


def geomean(values: List[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def targets(models: List[dict]) -> dict:
    """The issue's targets, each with the measured value and met / not met."""
    out = {}
    for phase, goal in TARGETS.items():
        ratios = {m["model"]: m[f"{phase}_ratio"] for m in models if f"{phase}_ratio" in m}
        if not ratios:
            continue
        g = geomean(list(ratios.values()))
        below = sorted(n for n, r in ratios.items() if r < FLOOR)
        out[phase] = {"geomean": g, "goal": goal, "met": g >= goal,
                      "below_floor": below, "floor_met": not below}
    return out


def cpu_flags() -> List[str]:
    """The CPU's vector-ISA flags: the avx*, fma, f16c and amx* ones."""
    return sorted(fl for fl in cnnkern.tuning.cpu_flags()
                  if fl.startswith(("avx", "amx")) or fl in ("fma", "f16c"))


def environment(args) -> dict:
    env = runner.environment(torch.device("cpu"))
    env.update(cpu_flags=cpu_flags(), torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
               argv=sys.argv[1:] if args.argv is None else args.argv)
    return env


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

ENGINES_SHOWN = [("eval", "torch"), ("eval", "cnnkern"), ("eval", "torch.compile"),
                 ("eval", "onnxruntime"), ("train", "torch"), ("train", "cnnkern")]


def _ms(entry: dict, notes: Footnotes) -> str:
    if entry is None:
        return ""
    if "median_ms" not in entry:
        return notes.tag(entry["note"])
    return f"{entry['median_ms']:.1f}"


def _ratio(value) -> str:
    return "" if value is None else f"{value:.2f}x"


def models_table(models: List[dict], notes: Footnotes):
    heads = ["model", "eval ms\ntorch", "eval ms\ncnnkern", "eval\nratio", "eval ms\ncompile",
             "eval ms\nORT", "train ms\ntorch", "train ms\ncnnkern", "train\nratio",
             "load\nafter"]
    t = table(heads, right=heads[1:], title="Whole models: median ms per call; ratio = torch / "
                                            "cnnkern (> 1: cnnkern faster)")
    for m in models:
        cells = {(p, e): _ms(m.get(p, {}).get(e), notes) for p, e in ENGINES_SHOWN}
        add_row(t, [m["model"], cells["eval", "torch"], cells["eval", "cnnkern"],
                    _ratio(m.get("eval_ratio")), cells["eval", "torch.compile"],
                    cells["eval", "onnxruntime"], cells["train", "torch"],
                    cells["train", "cnnkern"], _ratio(m.get("train_ratio")),
                    f"{m['load_average'][0]:.1f}" if m.get("load_average") else ""])
    goals = targets(models)
    add_row(t, ["geomean", "", "", _ratio(goals.get("eval", {}).get("geomean")), "", "", "", "",
                _ratio(goals.get("train", {}).get("geomean")), ""])
    return t


def kinds_table(m: dict):
    phases = [p for p in ("eval", "train") if f"{p}_kinds" in m]
    heads = ["kind"] + [h for p in phases for h in (f"{p} ms\ntorch", f"{p} ms\ncnnkern",
                                                    f"{p}\nratio")]
    t = table(heads, right=heads[1:], title=f"{m['model']}: where the time goes (the median "
                                            f"profiled call, self time by layer kind)")

    def row(label, values):
        cells = [label]
        for p in phases:
            a, b = values(p, "torch"), values(p, "cnnkern")
            cells += [f"{a:.1f}", f"{b:.1f}", _ratio(a / b) if a > 0 and b > 0 else ""]
        add_row(t, cells)

    for kind in layer_kinds.KINDS:
        row(kind, lambda p, e: m[f"{p}_kinds"][e][kind])
    row("sum of kinds", lambda p, e: sum(m[f"{p}_kinds"][e][k] for k in layer_kinds.KINDS))
    row("profiled total", lambda p, e: m[f"{p}_kinds"][e]["total"])
    row("timed median", lambda p, e: m[p][e]["median_ms"])
    return t


def kinds_sum_ok(m: dict) -> bool:
    """Whether every breakdown of this model sums to its profiled total (within SUM_TOLERANCE)."""
    return all(abs(sum(k[n] for n in layer_kinds.KINDS) - k["total"]) <= SUM_TOLERANCE * k["total"]
               for p in ("eval", "train") for k in m.get(f"{p}_kinds", {}).values())


def biggest_losses(models: List[dict], count: int = 3) -> List[dict]:
    """The (model, phase, kind) where cnnkern spends the most milliseconds more than torch."""
    gaps = [{"model": m["model"], "phase": p, "kind": kind,
             "torch_ms": m[f"{p}_kinds"]["torch"][kind],
             "cnnkern_ms": m[f"{p}_kinds"]["cnnkern"][kind]}
            for m in models for p in ("eval", "train") if f"{p}_kinds" in m
            for kind in layer_kinds.KINDS]
    for g in gaps:
        g["lost_ms"] = g["cnnkern_ms"] - g["torch_ms"]
    return sorted((g for g in gaps if g["lost_ms"] > 0), key=lambda g: -g["lost_ms"])[:count]


def target_lines(goals: dict) -> List[str]:
    lines = []
    for phase, g in goals.items():
        lines.append(f"target {phase} geomean >= {g['goal']}x: {g['geomean']:.2f}x, "
                     f"{'met' if g['met'] else 'NOT met'}")
        lines.append(f"target no model below {FLOOR}x in {phase}: "
                     + ("met" if g["floor_met"] else "NOT met (" + ", ".join(g["below_floor"]) + ")"))
    return lines


def format_report(models: List[dict], env: dict) -> str:
    notes = Footnotes()
    parts = [models_table(models, notes)]
    parts += [kinds_table(m) for m in models if "eval_kinds" in m]
    lines = target_lines(targets(models))
    for m in models:
        if not kinds_sum_ok(m):
            lines.append(f"WARNING {m['model']}: the layer kinds do not sum to the profiled total")
    losses = biggest_losses(models)
    if losses:
        lines.append("where cnnkern loses most against torch: " + "; ".join(
            f"{g['model']} {g['phase']} {g['kind']} +{g['lost_ms']:.1f} ms "
            f"({g['torch_ms']:.1f} -> {g['cnnkern_ms']:.1f})" for g in losses))
    head = (f"cnnkern {env['cnnkern']} | torch {env['torch']} | {env['cpu']} "
            f"({env['torch_cpu_capability']}) | {env['threads']} threads | load "
            f"{', '.join(f'{v:.2f}' for v in env['load_average'] or [])} | {env['date']}")
    return render(head, *parts, *lines, *notes.lines())


# ---------------------------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnnkern models", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(model_engines.DEFAULT_MODELS),
                   help=f"comma-separated, from: {', '.join(model_engines.MODELS)} "
                        f"(default: %(default)s)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and ORT's)")
    p.add_argument("--min-time", type=float, default=5.0,
                   help="seconds of timed rounds per model and phase, all engines together "
                        "(default: 5)")
    p.add_argument("--min-reps", type=int, default=5,
                   help="timed rounds at least, one call per engine each (default: 5)")
    p.add_argument("--algo", default="auto", help="cnnkern.convert's algo (default: auto)")
    p.add_argument("--profile-reps", type=int, default=3,
                   help="profiled calls per engine and phase; the breakdown shown is the "
                        "median call's (default: 3)")
    p.add_argument("--no-train", action="store_true", help="eval only")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-timeout", type=float, default=600,
                   help="seconds allowed for torch.compile's first call (default: 600)")
    p.add_argument("--no-onnxruntime", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--json", metavar="PATH", help="also write the raw data as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report", metavar="JSON",
                   help="measure nothing: print the tables of a saved --json run (also one cut "
                        "short: the file is rewritten after each model)")
    return p


def _check(args) -> None:
    names = args.models.split(",")
    bad = [n for n in names if n not in model_engines.MODELS]
    if bad:
        raise ValueError(f"--models: unknown model {bad[0]!r}; choose from "
                         f"{', '.join(model_engines.MODELS)}")
    for opt in ("batch", "size", "threads", "min_reps", "profile_reps"):
        if getattr(args, opt) < 1:
            raise ValueError(f"--{opt.replace('_', '-')} must be at least 1; got {getattr(args, opt)}")
    if args.min_time < 0:
        raise ValueError(f"--min-time must be >= 0; got {args.min_time}")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        echo(format_report(saved["models"], saved["environment"]))
        return 0
    try:
        _check(args)
    except ValueError as e:
        print(f"cnnkern models: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    env = environment(args)
    names = args.models.split(",")
    results = []
    with Progress(len(names) * (2 if args.no_train else 3), enabled=not args.no_progress) as prog:
        for name in names:
            results.append(measure_model(name, args, prog))
            if args.json:  # after each model: a run cut short keeps what it measured
                write_json(args.json, env, args, results)
    echo(format_report(results, env))
    return 0


def write_json(path: str, env: dict, args, results: List[dict]) -> None:
    config = {k: getattr(args, k) for k in ("models", "batch", "size", "threads", "min_time",
                                            "min_reps", "profile_reps", "algo", "no_train", "no_compile",
                                            "compile_timeout", "no_onnxruntime")}
    runner.write(path, json.dumps({"environment": env, "config": config, "models": results,
                                   "targets": targets(results),
                                   "biggest_losses": biggest_losses(results)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
