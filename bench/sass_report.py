"""Static performance report of cnnkern's CUDA kernels, from the compiled code (no GPU).

    python -m cnnkern sass-report [--so PATH] [--out PREFIX]
    python bench/sass_report.py   [--so PATH] [--out PREFIX]

For every kernel and template variant in the extension's sm_90 cubins: registers, spill
stores/loads, static and dynamic shared memory, block size, occupancy on an H100, and the main
loop's instruction mix; then a bound analysis of the headline layers (bench/sass_bounds.py).
The method is written at the top of the report (METHOD below) and in README.

Tools: `cuobjdump` (from $CNNKERN_CUOBJDUMP, PATH, the CUDA toolkit, or the copy inside the
pip `triton` package that torch installs). What the machine code says is cached per .so content
under build/sass_report/ (disassembling and parsing take 10-20 s on 2 cores).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run as a script: bench/ is not a package then
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import launch_config, occupancy, sass_bounds, sass_parse  # noqa: E401
else:
    from . import launch_config, occupancy, sass_bounds, sass_parse

REPO = pathlib.Path(__file__).resolve().parent.parent

METHOD = """\
Method (static: from the compiled code, no GPU)
- Source of every figure: the sm_90 cubins inside cnnkern/_C*.so. `cuobjdump -res-usage` gives
  registers, stack frame and static shared memory as ptxas recorded them; `cuobjdump -sass` the
  machine code. Spill stores/loads are the bytes of the STL/LDL instructions (each counted once,
  statically), which is what ptxas -v reports as spill stores/loads when a kernel keeps no array
  in local memory (cross-checked against nvcc 13.0 -Xptxas -v on the two files whose kernels
  spill, bench/results/ptxas_v_2026-12-07_sm90.txt: equal on every kernel; the other cubins
  have no STL/LDL at all). Block size and dynamic shared memory: the <<<grid, block, smem>>>
  of each kernel's launch in csrc/cuda, constants resolved from csrc/cuda and csrc/core
  (file:line in the table).
- Occupancy: CUDA 13.0 cuda_occupancy.h rules for sm_90 (bench/occupancy.py): 64K registers in 4
  sub-partitions allocated per warp in units of 256, 228 KiB shared memory per SM (+1 KiB
  reserved per block, 128-byte units), 2048 threads, 32 blocks per SM.
- Main loop: loops are backward branches (BRA to a lower address); the main loop is the
  innermost loop with the most work instructions (MMA, floating point, shared and global loads).
  Its instruction mix is a static count of its body: every path through an if/else inside it is
  counted, so for a body with branches it is an upper estimate of what one iteration issues;
  CALLed subroutines (ptxas's out-of-line 64-bit division) are listed apart.
- Bound analysis (bench/sass_bounds.py): per layer and kernel, the main loop's iterations follow
  from the layer's work and what one iteration does (its MMA or FMA count, or a trip count from
  the kernel's loop structure); then lower bounds on the time from: instruction issue (1 warp
  instruction per clock per scheduler, 4 schedulers x 132 SMs, the busiest SM's share of the
  blocks), tensor-core and FP32 peaks, shared-memory bandwidth (128 B per clock per SM, no bank
  conflicts assumed), and HBM (3.35 TB/s, each tensor moved once, plus whatever the algorithm
  writes and reads back). Clock 1.98 GHz: the boost clock implied by the datasheet's FP32 peak
  (66.9 TFLOP/s = 132 SMs x 128 FP32 lanes x 2 x 1.98 GHz), the most optimistic one (the tensor
  peak, 989.4 TFLOP/s at 4096 FLOP per clock per SM, implies 1.83 GHz; clocks sustained under
  load are often ~1.75 GHz, which would lengthen every issue bound by up to 13%). The predicted
  time is the
  largest bound; its name is the limiter. Latency (too few warps to hide it) is not modelled:
  where occupancy is low the prediction is optimistic.
- cuDNN figures are assumptions, not measurements (+-30%): stated per layer in the bound table.
"""


# ---------------------------------------------------------------------------------------------
# Tools and inputs
# ---------------------------------------------------------------------------------------------

def find_tool(name: str) -> Optional[str]:
    """Path of a CUDA binary tool (cuobjdump, nvdisasm), or None."""
    env = os.environ.get("CNNKERN_" + name.upper())
    if env and os.path.exists(env):
        return env
    found = shutil.which(name)
    if found:
        return found
    dirs = [os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin")]
    spec = importlib.util.find_spec("triton")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(os.path.join(list(spec.submodule_search_locations)[0],
                                 "backends", "nvidia", "bin"))
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return None


def extension_path() -> Optional[pathlib.Path]:
    """The built cnnkern/_C*.so of the package that `import cnnkern` would load."""
    spec = importlib.util.find_spec("cnnkern")
    dirs = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    dirs.append(str(REPO / "cnnkern"))
    for d in dirs:
        found = sorted(pathlib.Path(d).glob("_C*.so"))
        if found:
            return found[0]
    return None


def _run(args: List[str]) -> str:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def list_cubins(cuobjdump: str, so: pathlib.Path) -> List[str]:
    """Names of the ELF (cubin) images in the .so: empty for a CPU-only build."""
    res = subprocess.run([cuobjdump, "--list-elf", str(so)], capture_output=True, text=True)
    if res.returncode != 0:  # "does not contain device code"
        return []
    return [line.split(":", 1)[1].strip() for line in res.stdout.splitlines() if ":" in line]


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def disassemble(cuobjdump: str, so: pathlib.Path) -> Dict[str, str]:
    """{"res": res-usage text, "sass": SASS text} of every cubin in the .so: the cubins are
    extracted and disassembled concurrently (one process each)."""
    with tempfile.TemporaryDirectory(prefix="cnnkern_sass_") as tmp:
        subprocess.run([cuobjdump, "-xelf", "all", str(so)], cwd=tmp, capture_output=True,
                       check=True)
        cubins = sorted(pathlib.Path(tmp).glob("*.cubin"))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
            sass = list(ex.map(lambda c: _run([cuobjdump, "-sass", str(c)]), cubins))
    return {"res": _run([cuobjdump, "-res-usage", str(so)]), "sass": "\n".join(sass)}


def sass_facts(mangled: str, instrs: List[sass_parse.Instr], res: sass_parse.Resources) -> Dict:
    """What the machine code says about one kernel (no launch, no occupancy): plain data."""
    st, ld = sass_parse.local_bytes(instrs)
    loops = sass_parse.find_loops(instrs)
    ml = sass_parse.main_loop(instrs, loops)
    facts = dict(mangled=mangled, source=os.path.basename(res.source), arch=res.arch,
                 registers=res.registers, stack=res.stack, shared_static=res.shared_static,
                 spill_store_bytes=st, spill_load_bytes=ld, loops=len(loops), main_loop=None,
                 main_loop_mix={c: 0 for c in sass_parse.CLASS_NAMES}, main_loop_spill_instrs=0,
                 main_loop_calls=0, subroutine_instrs=0, main_loop_shared_bytes=0,
                 main_loop_chain=[])
    if ml is not None:
        b = sass_parse.body(instrs, ml)
        subs = sass_parse.subroutines(instrs)
        targets = [i.branch_target() for i in b if i.root == "CALL"]
        facts.update(
            main_loop={"start": ml.start, "end": ml.end, "depth": ml.depth,
                       "instructions": len(b)},
            main_loop_mix=sass_parse.mix(b),
            main_loop_spill_instrs=sum(1 for i in b if i.root in ("STL", "LDL")),
            main_loop_calls=len(targets), subroutine_instrs=sum(subs.get(t, 0) for t in targets),
            main_loop_shared_bytes=sass_parse.shared_bytes(b),
            main_loop_chain=sass_parse.chain(instrs, ml, loops))
    return facts


def _parser_hash() -> str:
    """Changes when the parser does, so a cached result never outlives the code that made it."""
    h = hashlib.sha256(pathlib.Path(sass_parse.__file__).read_bytes())
    h.update(sass_facts.__code__.co_code)
    return h.hexdigest()[:12]


def kernel_facts(cuobjdump: str, so: pathlib.Path,
                 cache_dir: Optional[pathlib.Path] = None) -> Dict[str, Dict]:
    """sass_facts of every kernel in the .so, by readable name; cached per (.so content, parser)
    under build/sass_report/ (disassembling and parsing take 10-20 s here, the cache < 1 s)."""
    cache_dir = cache_dir or REPO / "build" / "sass_report"
    key = cache_dir / f"{_sha256(so)[:32]}_{_parser_hash()}.json"
    if key.exists():
        return json.loads(key.read_text())
    dis = disassemble(cuobjdump, so)
    resources = sass_parse.parse_resources(dis["res"])
    sass = sass_parse.parse_sass(dis["sass"])
    names = sass_parse.demangle(sorted(sass))
    out: Dict[str, Dict] = {}
    for mangled in sorted(sass, key=lambda m: (names[m], m)):
        res = resources.get(mangled) or sass_parse.Resources(0, 0, 0, 0, 0)
        name = names[mangled] if names[mangled] not in out else mangled  # never two as one
        out[name] = sass_facts(mangled, sass[mangled], res)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(f".{os.getpid()}.tmp")  # parallel test workers: no shared tmp
        tmp.write_text(json.dumps(out))
        tmp.replace(key)
        for old in cache_dir.glob("*.json"):  # what older parsers made: never read again
            if old != key and old.name.split("_")[0] == key.name.split("_")[0]:
                old.unlink()
    except OSError:
        pass  # a read-only tree: no cache, same result
    return out


# ---------------------------------------------------------------------------------------------
# Per-kernel report: the machine code's facts + the launch + occupancy
# ---------------------------------------------------------------------------------------------

def kernel_report(name: str, facts: Dict, launch: Optional[launch_config.Launch]) -> Dict:
    block = launch.block if launch else None
    dyn = launch.dynamic_smem if launch else None
    occ = None
    if block is not None and dyn is not None:
        occ = occupancy.occupancy(block, facts["registers"], facts["shared_static"] + dyn)
    return dict(
        name=name, **facts, shared_dynamic=dyn, block=block,
        launch_where=launch.where if launch else "no <<<>>> launch found in csrc/cuda",
        blocks_per_sm=occ.blocks_per_sm if occ else None,
        warps_per_sm=occ.warps_per_sm if occ else None,
        occupancy_limiter=occ.limiter if occ else "unknown block size",
        spills=facts["spill_store_bytes"] > 0 or facts["spill_load_bytes"] > 0)


def analyse(so: Optional[pathlib.Path] = None, cuobjdump: Optional[str] = None,
            csrc: Optional[pathlib.Path] = None) -> Dict:
    """The whole report as plain data: {"so", "sha256", "arch", "kernels": [...], "layers": [...]}.
    Raises FileNotFoundError without cuobjdump or the .so, ValueError for a .so without cubins."""
    so = so or extension_path()
    if so is None or not pathlib.Path(so).exists():
        raise FileNotFoundError(f"sass-report: no built extension (cnnkern/_C*.so); got {so}")
    so = pathlib.Path(so)
    cuobjdump = cuobjdump or find_tool("cuobjdump")
    if cuobjdump is None:
        raise FileNotFoundError("sass-report: cuobjdump not found (PATH, CUDA_HOME/bin, "
                                "triton/backends/nvidia/bin, or $CNNKERN_CUOBJDUMP)")
    if not list_cubins(cuobjdump, so):
        raise ValueError(f"sass-report: {so} has no CUDA cubins (a CNNKERN_CUDA=0 build?)")
    facts = kernel_facts(cuobjdump, so)
    table = launch_config.launches(csrc or REPO / "csrc")
    kernels = [kernel_report(name, f, launch_config.lookup(name, table)[0])
               for name, f in facts.items()]
    try:
        shown = str(so.resolve().relative_to(REPO))
    except ValueError:
        shown = str(so)
    version = _run([cuobjdump, "--version"]).strip().splitlines()
    return {"so": shown, "sha256": _sha256(so), "arch": sorted({k["arch"] for k in kernels}),
            "cuobjdump": version[-1] if version else "",
            "kernels": kernels,
            "layers": sass_bounds.analyse_layers({k["name"]: k for k in kernels})}


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

MIX_COLUMNS = ("mma", "ffma", "fp_other", "convert", "shared_ld", "shared_st", "global_ld",
               "global_st", "async_copy", "local", "int", "barrier", "control", "move", "other")


W = 76  # kernel-name column


def _opt(v) -> str:
    return "?" if v is None else str(v)


def format_kernels(kernels: List[Dict]) -> str:
    lines = ["Kernels (one row per template variant; smem in bytes; occupancy on an H100)", ""]
    hdr = (f"{'kernel':{W}s} {'regs':>4s} {'spill st/ld':>11s} {'smem':>6s} {'dyn':>3s} "
           f"{'block':>5s} {'blk/SM':>6s} {'warps':>5s} {'limit':>9s}")
    lines.append(hdr)
    for k in kernels:
        spill = f"{k['spill_store_bytes']}/{k['spill_load_bytes']}"
        lines.append(f"{k['name'][:W]:{W}s} {k['registers']:4d} {spill:>11s} "
                     f"{k['shared_static']:6d} {_opt(k['shared_dynamic']):>3s} "
                     f"{_opt(k['block']):>5s} "
                     f"{_opt(k['blocks_per_sm']):>6s} {_opt(k['warps_per_sm']):>5s} "
                     f"{k['occupancy_limiter'][:9]:>9s}")
    lines += ["", "Block size and dynamic shared memory from the launch code:"]
    seen = {}
    for k in kernels:
        root = launch_config.kernel_root(k["name"])
        seen.setdefault(root, (k["block"], k["shared_dynamic"], k["launch_where"]))
    for root, (b, d, where) in seen.items():
        lines.append(f"  {root}: block {_opt(b)}, dynamic smem {_opt(d)}  ({where})")
    lines += ["", "Main loop instruction mix (static count of the loop body, per warp per "
                  "iteration; calls = CALLs to subroutines, +N their instructions)", ""]
    short = {"mma": "mma", "ffma": "fma", "fp_other": "fp", "convert": "cvt", "shared_ld": "lds",
             "shared_st": "sts", "global_ld": "ldg", "global_st": "stg", "async_copy": "async",
             "local": "spill", "int": "int", "barrier": "bar", "control": "ctrl",
             "move": "mov", "other": "oth"}
    lines.append(f"{'kernel':{W}s} {'n':>5s} {'%mma':>5s} {'%fma':>5s} "
                 + " ".join(f"{short[c]:>5s}" for c in MIX_COLUMNS) + "  calls")
    for k in kernels:
        ml = k["main_loop"]
        if ml is None:
            lines.append(f"{k['name'][:W]:{W}s} {'-':>5s}  (no loop)")
            continue
        mix = k["main_loop_mix"]
        calls = (f"  {k['main_loop_calls']} (+{k['subroutine_instrs']})"
                 if k["main_loop_calls"] else "")
        n = ml["instructions"]
        lines.append(f"{k['name'][:W]:{W}s} {n:5d} {100 * mix['mma'] / n:5.1f} "
                     f"{100 * mix['ffma'] / n:5.1f} "
                     + " ".join(f"{mix.get(c, 0):5d}" for c in MIX_COLUMNS) + calls)
    return "\n".join(lines)


def format_report(report: Dict) -> str:
    head = [f"cnnkern static performance report: {report['so']}",
            f"sha256 {report['sha256'][:16]}, arch {', '.join(report['arch'])}; "
            f"{report['cuobjdump']}", "", METHOD]
    spilling = [k["name"] for k in report["kernels"] if k["spills"]]
    head.append(f"{len(report['kernels'])} kernels; {len(spilling)} spill registers"
                + (":" if spilling else ""))
    head += [f"  {n}" for n in spilling] + [""]
    return "\n".join(head) + format_kernels(report["kernels"]) + "\n\n" + \
        sass_bounds.format_layers(report["layers"]) + "\n"


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="cnnkern sass-report", description=__doc__.split("\n\n")[0])
    p.add_argument("--so", type=pathlib.Path, default=None,
                   help="the extension to read (default: the cnnkern/_C*.so that imports)")
    p.add_argument("--out", default=None,
                   help="write PREFIX.txt and PREFIX.json (e.g. bench/results/sass_DATE_sm90)")
    args = p.parse_args(argv)
    try:
        report = analyse(args.so)
    except (FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    text = format_report(report)
    if args.out:
        pathlib.Path(args.out + ".txt").write_text(text)
        pathlib.Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}.txt and {args.out}.json", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
