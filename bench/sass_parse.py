"""Reading compiled CUDA kernels: `cuobjdump -res-usage` and `cuobjdump -sass` text.

Pure text in, plain data out (no torch, no subprocess), so the parser, the instruction classes
and the loop finder are unit-tested on hand-written snippets (tests/api/test_sass_report.py).

- `parse_resources(text)`: per kernel, registers, stack frame, static shared memory, local
  memory, as ptxas recorded them in the cubin (`REG:26 STACK:0 SHARED:5120 LOCAL:0 ...`).
- `parse_sass(text)`: per kernel, its instructions (address, predicate, opcode, operands).
- `classify(opcode)`: the instruction's class in the report's mix (CLASSES below).
- `find_loops(instrs)`: loops as backward branches (`BRA` to a lower address); the main loop is
  the innermost loop with the most work in it (`main_loop`).
- `local_bytes(instrs)`: bytes stored/loaded to local memory (`STL`/`LDL`) by the code, static
  count: ptxas's "spill stores/loads" when the kernel keeps no array in local memory.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# The report's instruction classes, in the order its tables print them. Per class, the opcode
# roots (the part before the first '.') that belong to it; anything else is "other".
CLASSES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    # tensor cores: mma.sync (HMMA/IMMA/DMMA/BMMA), Hopper wgmma (HGMMA/IGMMA/QGMMA/BGMMA)
    ("mma", ("HMMA", "IMMA", "DMMA", "BMMA", "HGMMA", "IGMMA", "QGMMA", "BGMMA")),
    ("ffma", ("FFMA", "DFMA", "HFMA2")),  # fused multiply-add: 2 FLOP per lane
    ("fp_other", ("FMUL", "FADD", "DMUL", "DADD", "HMUL2", "HADD2", "FMNMX", "DMNMX", "HMNMX2",
                  "FSETP", "DSETP", "HSETP2", "FSEL", "FCHK", "MUFU", "FSWZADD")),
    ("convert", ("F2F", "F2FP", "F2I", "I2F", "I2FP", "F2IP", "FRND")),
    ("shared_ld", ("LDS", "LDSM")),
    ("shared_st", ("STS", "STSM")),
    ("global_ld", ("LDG", "LD", "TLD", "TEX")),
    ("global_st", ("STG", "ST", "RED", "ATOM", "ATOMG", "REDG")),
    ("async_copy", ("LDGSTS", "LDGDEPBAR", "DEPBAR", "UBLKCP", "UTMALDG", "UTMASTG", "UTMAPF",
                    "SYNCS")),
    ("local", ("LDL", "STL")),  # spills (or a local array)
    ("int", ("IMAD", "IADD3", "IADD", "LEA", "SHF", "SHL", "SHR", "LOP3", "LOP", "ISETP", "IMNMX",
             "IABS", "SEL", "PRMT", "POPC", "FLO", "BREV", "IMUL", "ISCADD", "VIADD",
             "VIMNMX", "IDP", "BMSK", "SGXT", "PLOP3", "P2R", "R2P",
             "UIMAD", "UIADD3", "ULEA", "USHF", "ULOP3", "UISETP", "USEL", "UPRMT", "UPLOP3",
             "UIMNMX", "UFLO", "UPOPC", "UBMSK", "USGXT", "UP2UR", "UR2UP", "VIADDMNMX")),
    ("barrier", ("BAR", "MEMBAR", "ERRBAR", "FENCE")),  # block barriers and memory fences
    # branches, calls, and the convergence barriers around divergent code (BSSY/BSYNC)
    ("control", ("BRA", "BRX", "JMP", "JMX", "CALL", "RET", "EXIT", "BPT", "BREAK", "KILL",
                 "BSSY", "BSYNC", "WARPSYNC")),
    ("move", ("MOV", "UMOV", "S2R", "S2UR", "CS2R", "R2UR", "ULDC", "LDC", "SHFL", "VOTE",
              "VOTEU", "MATCH", "REDUX", "CS2UR")),
)
CLASS_NAMES = tuple(name for name, _ in CLASSES) + ("other",)
_CLASS_OF = {}
for _name, _ops in CLASSES:
    for _op in _ops:
        _CLASS_OF.setdefault(_op, _name)

# Classes that carry a kernel's work: the main loop is the innermost loop with most of these.
WORK_CLASSES = ("mma", "ffma", "fp_other", "shared_ld", "global_ld", "async_copy")


def classify(opcode: str) -> str:
    """The report class of a SASS opcode (`HMMA.16816.F32` -> "mma")."""
    return _CLASS_OF.get(opcode.split(".")[0], "other")


@dataclasses.dataclass(frozen=True)
class Instr:
    addr: int
    opcode: str        # with modifiers: "LDG.E.64.CONSTANT"
    operands: str
    predicate: str = ""
    root: str = dataclasses.field(init=False, repr=False)  # "LDG"

    def __post_init__(self):
        object.__setattr__(self, "root", self.opcode.split(".", 1)[0])

    def branch_target(self) -> Optional[int]:
        """The target address of a direct branch or call, else None."""
        if self.root not in ("BRA", "CALL", "JMP"):
            return None
        m = re.search(r"0x([0-9a-fA-F]+)", self.operands)
        return int(m.group(1), 16) if m else None


# "        /*0160*/   @!P0 STL.64 [R1+0x8], R2 ;   /* 0x0000000201007387 */"
_INSTR = re.compile(r"^\s*/\*([0-9a-fA-F]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?"
                    r"([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")


def parse_sass(text: str) -> Dict[str, List[Instr]]:
    """Instructions per kernel (mangled name) of `cuobjdump -sass` output. NOPs are dropped:
    they pad the code to alignment and are never issued in a loop."""
    out: Dict[str, List[Instr]] = {}
    current: Optional[List[Instr]] = None
    for line in text.splitlines():
        s = line.lstrip()
        if not s.startswith("/*") or s.startswith("/* "):  # not code (headers, encodings)
            m = _FUNCTION.match(line)
            if m:
                current = out.setdefault(m.group(1), [])
            continue
        if current is None:
            continue
        m = _INSTR.match(line)
        if m and m.group(3) != "NOP":
            current.append(Instr(int(m.group(1), 16), m.group(3), m.group(4).strip(),
                                 (m.group(2) or "").strip()))
    return out


@dataclasses.dataclass
class Resources:
    registers: int
    stack: int           # stack frame bytes (spill slots live here)
    shared_static: int   # bytes
    local: int           # local memory bytes outside the stack frame
    constant: int        # bank-0 bytes (kernel parameters and driver constants)
    source: str = ""     # the .cu file the cubin came from
    arch: str = ""


# " Function _Z...:" then "  REG:26 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:632 ..."
_RES_FUNC = re.compile(r"^\s*Function\s+([^\s:]+):\s*$")
_RES_LINE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)"
                       r"(?:\s+CONSTANT\[0\]:(\d+))?")


def parse_resources(text: str) -> Dict[str, Resources]:
    """Per kernel (mangled name), the resources of `cuobjdump -res-usage` output."""
    out: Dict[str, Resources] = {}
    name = source = arch = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("identifier ="):
            source = s.split("=", 1)[1].strip()
        elif s.startswith("arch ="):
            arch = s.split("=", 1)[1].strip()
        m = _RES_FUNC.match(line)
        if m:
            name = m.group(1)
            continue
        m = _RES_LINE.search(line)
        if m and name:
            out[name] = Resources(int(m.group(1)), int(m.group(2)), int(m.group(3)),
                                  int(m.group(4)), int(m.group(5) or 0), source, arch)
            name = ""
    return out


def access_bytes(opcode: str) -> int:
    """Bytes per thread moved by a load/store: the width modifier (.64, .128, .U8, .S16...),
    else 32 bits."""
    mods = opcode.split(".")[1:]
    for mod, size in (("128", 16), ("64", 8), ("U16", 2), ("S16", 2), ("U8", 1), ("S8", 1)):
        if mod in mods:
            return size
    return 4


def local_bytes(instrs: Iterable[Instr]) -> Tuple[int, int]:
    """(bytes stored, bytes loaded) by STL / LDL instructions, each counted once (static)."""
    st = ld = 0
    for i in instrs:
        if i.root == "STL":
            st += access_bytes(i.opcode)
        elif i.root == "LDL":
            ld += access_bytes(i.opcode)
    return st, ld


@dataclasses.dataclass
class Loop:
    start: int        # address of the loop head (the branch target)
    end: int          # address of the (last) backward branch
    depth: int = 1    # 1 = outermost
    innermost: bool = True

    def contains(self, other: "Loop") -> bool:
        return (self.start <= other.start and other.end <= self.end
                and (self.start, self.end) != (other.start, other.end))


def find_loops(instrs: Sequence[Instr]) -> List[Loop]:
    """Loops of a kernel: every backward branch (`BRA` whose target is at or below it) closes
    one; branches back to the same head are one loop (a `continue`). A branch to itself is the
    idle loop ptxas puts after the last EXIT, not a loop of the kernel."""
    ends: Dict[int, int] = {}
    for i in instrs:
        t = i.branch_target() if i.root == "BRA" else None
        if t is not None and t < i.addr:
            ends[t] = max(ends.get(t, 0), i.addr)
    loops = [Loop(start, end) for start, end in sorted(ends.items())]
    for lp in loops:
        lp.depth = 1 + sum(1 for o in loops if o.contains(lp))
        lp.innermost = not any(lp.contains(o) for o in loops)
    return loops


def body(instrs: Sequence[Instr], loop: Loop) -> List[Instr]:
    """The instructions from the loop head to its backward branch, both included."""
    return [i for i in instrs if loop.start <= i.addr <= loop.end]


def mix(instrs: Iterable[Instr]) -> Dict[str, int]:
    """Instruction count per class (every class present, zeros included)."""
    counts = {name: 0 for name in CLASS_NAMES}
    for i in instrs:
        counts[classify(i.opcode)] += 1
    return counts


def shared_bytes(instrs: Iterable[Instr]) -> int:
    """Bytes a warp moves through shared memory: LDS/STS at their width x 32 lanes; LDSM at
    128 bytes per 8x8 matrix (.x1/.x2/.x4)."""
    total = 0
    for i in instrs:
        if i.root in ("LDS", "STS"):
            total += 32 * access_bytes(i.opcode)
        elif i.root in ("LDSM", "STSM"):
            # LDSM.16.M88.4 / .2 (SASS) = ldmatrix .x4 / .x2 (PTX); no count = one matrix
            mods = {m.lstrip("xX") for m in i.opcode.split(".")[2:]}
            total += 128 * (4 if "4" in mods else 2 if "2" in mods else 1)
    return total


def chain(instrs: Sequence[Instr], loop: Loop,
          loops: Optional[List[Loop]] = None) -> List[Dict[str, int]]:
    """The loops enclosing `loop` and itself, outermost first, each with its instruction count
    and its exclusive count (without the loops nested in it: what one of its iterations issues
    beyond them). `loops`: find_loops(instrs), when the caller has it."""
    loops = find_loops(instrs) if loops is None else loops
    out = []
    for lp in sorted((o for o in loops if o.contains(loop) or o == loop), key=lambda o: o.depth):
        n = len(body(instrs, lp))
        nested = [o for o in loops if lp.contains(o) and o.depth == lp.depth + 1]
        out.append({"depth": lp.depth, "start": lp.start, "end": lp.end, "instructions": n,
                    "exclusive": n - sum(len(body(instrs, o)) for o in nested)})
    return out


def work(counts: Dict[str, int]) -> int:
    return sum(counts[c] for c in WORK_CLASSES)


def main_loop(instrs: Sequence[Instr], loops: Optional[List[Loop]] = None) -> Optional[Loop]:
    """The hottest loop, statically: the innermost loop with the most work instructions
    (tensor-core MMA, floating point, shared and global loads) in its body; ties go to the
    deeper, then the larger loop. None for a kernel without loops."""
    best, best_key = None, None
    for lp in find_loops(instrs) if loops is None else loops:
        if not lp.innermost:
            continue
        b = body(instrs, lp)
        key = (work(mix(b)), lp.depth, len(b))
        if best_key is None or key > best_key:
            best, best_key = lp, key
    return best


def subroutines(instrs: Sequence[Instr]) -> Dict[int, int]:
    """Instructions of each subroutine the kernel CALLs (target -> count up to its first RET):
    ptxas's out-of-line 64-bit division and similar slow paths."""
    out = {}
    for i in instrs:
        t = i.branch_target() if i.root == "CALL" else None
        if t is not None and t not in out:
            n = 0
            for j in instrs:
                if j.addr < t:
                    continue
                n += 1
                if j.root == "RET":
                    break
            out[t] = n
    return out


def demangle(names: Sequence[str]) -> Dict[str, str]:
    """Readable kernel names: c++filt's, without the parameter list and the namespaces
    (`igemm_kernel<__half, FpropMap, MmaCompute<MmaOp<__half> > >`); the mangled name when
    c++filt is absent."""
    out = {n: n for n in names}
    exe = shutil.which("c++filt")
    if not exe or not names:
        return out
    res = subprocess.run([exe], input="\n".join(names), capture_output=True, text=True)
    lines = res.stdout.splitlines()
    if res.returncode != 0 or len(lines) != len(names):
        return out
    for n, d in zip(names, lines):
        out[n] = short_name(d)
    return out


def short_name(demangled: str) -> str:
    d = demangled.replace("(anonymous namespace)::", "")
    d = re.sub(r"^void\s+", "", d)
    depth = 0  # cut the parameter list: the first '(' outside template brackets
    for k, ch in enumerate(d):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            d = d[:k]
            break
    d = re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*::", "", d)
    return d.strip()
