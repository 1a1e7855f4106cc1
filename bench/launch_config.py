"""Block size and dynamic shared memory of each CUDA kernel, read from the launch code.

Every `kernel<...><<<grid, block, smem, stream>>>` in csrc/cuda names its block size and dynamic
shared memory as a number or a constant; constants are resolved through the
`constexpr int NAME = <number>;` definitions in csrc/cuda and csrc/core (the last `::`
component: `kThreads` for `Tile::kThreads`). A name defined with two different values, or an
expression, is left unresolved and says so: the report then shows the kernel's figures that do
not depend on it and marks its occupancy unknown, rather than guessing.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Dict, Iterable, Optional, Tuple

# kernel<T, Map><<<grid, block, smem, stream>>>  /  kernel<<<grid, block>>>
_LAUNCH = re.compile(r"\b([A-Za-z_]\w*)\s*(?:<(?:[^<>;]|<[^<>;]*>)*>)?\s*<<<(.*?)>>>", re.S)
_CONSTEXPR = re.compile(r"constexpr\s+(?:static\s+)?(?:unsigned\s+)?(?:int|int64_t|int32_t|"
                        r"size_t|unsigned)\s+(\w+)\s*=\s*(\d+(?:\s*\*\s*\d+)?)\s*;")
# A launch whose dynamic shared memory is worked out at run time states its bound beside it:
#   // sass-report: smem <= kSmemBudget
# (the expression as written in the <<<>>>, then a number or constant); the report then takes
# that bound, the worst case for occupancy, and says so.
_SMEM_BOUND = re.compile(r"//\s*sass-report:\s*(\w+)\s*<=\s*([\w:]+)")


@dataclasses.dataclass
class Launch:
    kernel: str                      # the kernel template's name: "igemm_kernel"
    block: Optional[int]             # threads per block, None when unresolved
    dynamic_smem: Optional[int]      # bytes, None when unresolved
    where: str                       # "csrc/cuda/file.cu:line"
    block_expr: str = ""
    smem_expr: str = ""


def _split_args(text: str) -> list:
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def constants(files: Iterable[pathlib.Path]) -> Dict[str, Optional[int]]:
    """NAME -> value of every integer constexpr; None where a name has two values."""
    out: Dict[str, Optional[int]] = {}
    for f in files:
        for name, value in _CONSTEXPR.findall(f.read_text(errors="replace")):
            v = 1
            for factor in value.split("*"):  # "48 * 1024"
                v *= int(factor)
            out[name] = v if out.get(name, v) == v else None
    return out


def resolve(expr: str, consts: Dict[str, Optional[int]]) -> Optional[int]:
    e = expr.strip()
    if re.fullmatch(r"\d+", e):
        return int(e)
    if re.fullmatch(r"[\w:]+", e):
        return consts.get(e.split("::")[-1])
    return None


def launches(csrc: pathlib.Path) -> Dict[str, Launch]:
    """kernel name -> its launch, from every .cu / .cuh / .cpp under csrc/cuda. A kernel launched
    from two places with different block sizes keeps the first and notes the second."""
    sources = sorted(p for p in (csrc / "cuda").glob("*") if p.suffix in (".cu", ".cuh", ".cpp"))
    # The constants the kernels can see: csrc/cuda and the torch-free csrc/core they include
    # (csrc/testing has kernels of its own, with other block sizes).
    consts = constants(p for d in ("cuda", "core") for p in sorted((csrc / d).glob("*"))
                       if p.suffix in (".h", ".cuh", ".cu", ".cpp"))
    out: Dict[str, Launch] = {}
    for path in sources:
        text = path.read_text(errors="replace")
        for m in _LAUNCH.finditer(text):
            args = _split_args(m.group(2))
            if len(args) < 2:
                continue
            line = text.count("\n", 0, m.start()) + 1
            smem_expr = args[2] if len(args) > 2 else "0"
            smem = resolve(smem_expr, consts)
            if smem is None:  # a run-time size: the bound stated before the launch, if any
                bounds = {e: b for e, b in _SMEM_BOUND.findall(text[:m.start()])}
                if smem_expr.strip() in bounds:
                    smem = resolve(bounds[smem_expr.strip()], consts)
                    smem_expr += f" <= {bounds[smem_expr.strip()]}"
            launch = Launch(m.group(1), resolve(args[1], consts), smem,
                            f"{path.relative_to(csrc.parent)}:{line}", args[1], smem_expr)
            prev = out.get(launch.kernel)
            if prev is None:
                out[launch.kernel] = launch
            elif prev.block != launch.block:
                prev.block = None
                prev.block_expr += f" / {launch.block_expr} ({launch.where})"
    return out


def kernel_root(short_name: str) -> str:
    """`igemm_kernel<float, FpropMap, SimtCompute>` -> `igemm_kernel`."""
    return short_name.split("<", 1)[0].strip()


def lookup(short_name: str, table: Dict[str, Launch]) -> Tuple[Optional[Launch], str]:
    """The launch of a kernel and a note when there is none."""
    launch = table.get(kernel_root(short_name))
    if launch is None:
        return None, "no <<<>>> launch found in csrc/cuda"
    return launch, ""
