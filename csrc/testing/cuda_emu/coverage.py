"""Line coverage of the CUDA sources (csrc/cuda/*.cu, *.cuh) from the last emulated test run with
the coverage build (scripts/cuda_emu.sh coverage). Reads gcov's JSON for every object of
build/cuda_emu/coverage (the translated kernels carry #line directives, so lines are the .cu
files' own), merges template instantiations and translation units (a line counts as covered
when any of them ran it), prints per-file figures and the uncovered lines, and exits 1 below
--fail-under (95 by default).

    python csrc/testing/cuda_emu/coverage.py [--fail-under 95] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent.parent
ROOT = CSRC.parent
OBJ = ROOT / "build" / "cuda_emu" / "coverage" / "obj"


def _gcov_json(gcda: Path) -> dict:
    res = subprocess.run(["gcov", "--json-format", "--stdout", gcda.name], cwd=gcda.parent,
                         capture_output=True, check=True)
    out = res.stdout
    if out[:2] == b"\x1f\x8b":
        out = gzip.decompress(out)
    return json.loads(out)


def line_counts() -> dict[Path, dict[int, int]]:
    """{source file: {line: executions}} over every object with counts."""
    counts: dict[Path, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    gcdas = sorted(OBJ.rglob("*.gcda"))
    if not gcdas:
        raise SystemExit("coverage: no .gcda files: run `bash scripts/cuda_emu.sh coverage` first")
    for gcda in gcdas:
        for f in _gcov_json(gcda)["files"]:
            path = Path(f["file"])
            if not path.is_absolute():
                path = (gcda.parent / path).resolve()
            for line in f["lines"]:
                counts[path][line["line_number"]] += line["count"]
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fail-under", type=float, default=95.0)
    ap.add_argument("--json", help="also write the figures and uncovered lines here")
    args = ap.parse_args(argv)
    counts = line_counts()
    cuda = CSRC / "cuda"
    targets = sorted(p for p in counts if p.parent == cuda and p.suffix in (".cu", ".cuh"))
    total = covered = 0
    report = {}
    print(f"{'file':<36} {'lines':>6} {'covered':>8} {'%':>7}")
    for path in targets:
        lines = counts[path]
        hit = sorted(n for n, c in lines.items() if c > 0)
        missed = sorted(n for n, c in lines.items() if c == 0)
        total += len(lines)
        covered += len(hit)
        pct = 100.0 * len(hit) / max(1, len(lines))
        report[str(path.relative_to(ROOT))] = {"lines": len(lines), "covered": len(hit),
                                               "percent": pct, "uncovered": missed}
        print(f"{str(path.relative_to(CSRC)):<36} {len(lines):>6} {len(hit):>8} {pct:>6.1f}%")
    pct = 100.0 * covered / max(1, total)
    print(f"{'total':<36} {total:>6} {covered:>8} {pct:>6.1f}%")
    for name, r in report.items():
        if r["uncovered"]:
            src = (ROOT / name).read_text().splitlines()
            print(f"\nuncovered in {name}:")
            for n in r["uncovered"]:
                print(f"  {n:>4}: {src[n - 1].strip()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"percent": pct, "files": report}, indent=1))
    if pct < args.fail_under:
        print(f"coverage {pct:.1f}% is below {args.fail_under}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
