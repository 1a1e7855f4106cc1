"""Turns a CUDA source (.cu / .cuh) into the C++ that the emulator compiles with g++.

Three constructs are CUDA syntax rather than C++ that a header could define, and are rewritten
in place, keeping every line where it was (a `#line` directive names the original file, so
compiler messages, the engine's messages and coverage point at the .cu source):

  kernel<T><<<grid, block, smem, stream>>>(args)
      -> ::cuda_emu::launch_kernel(kernel<T>, ::cuda_emu::LaunchSite{...}, grid, block, smem,
                                   stream)(args)
     The LaunchSite carries the kernel's __launch_bounds__ (read from its declaration in any
     of the translated files), which the engine checks at every launch.
  __shared__ T name[N], other[M];
      -> auto& name = ::cuda_emu::shared_var<T[N]>([] {}, __FILE__, __LINE__); auto& other = ...;
     Storage per block, filled with 0xFF bytes when the block starts using it.
  extern __shared__ T name[];
      -> T* const name = ::cuda_emu::dynamic_shared_as<T>();

Everything else is left to the headers of csrc/testing/cuda_emu/include. This is the same kind
of rewrite nvcc's own front end makes (it turns <<<>>> into calls of cudaLaunchKernel); the
translated files are build products, never edited or committed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_IDENT = re.compile(r"[A-Za-z_]\w*")


class TranslateError(Exception):
    pass


def code_mask(text: str) -> list[bool]:
    """True for each character that is code (not inside a comment, string or char literal)."""
    mask = [True] * len(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                i += 1
                continue
            end = ")" + m.group(1) + '"'
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j += 1
        else:
            i += 1
            continue
        for k in range(i, min(j, n)):
            mask[k] = False
        i = j
    return mask


def _find_code(text: str, mask: list[bool], token: str, start: int = 0) -> int:
    i = text.find(token, start)
    while i >= 0 and not mask[i]:
        i = text.find(token, i + 1)
    return i


def _matching(text: str, i: int, open_c: str, close_c: str) -> int:
    """Index just past the bracket that closes the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_c:
            depth += 1
        elif text[j] == close_c:
            depth -= 1
            if depth == 0:
                return j + 1
    raise TranslateError(f"unbalanced {open_c!r} at offset {i}")


def _split_top_level(s: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _line_of(text: str, i: int) -> int:
    return text.count("\n", 0, i) + 1


def kernel_declarations(text: str) -> tuple[set[str], dict[str, str]]:
    """The __global__ function names in a source and, for those that declare them, their
    __launch_bounds__ (the first argument: the maximum threads per block, as written)."""
    mask = code_mask(text)
    kernels, bounds = set(), {}
    i = _find_code(text, mask, "__global__")
    while i >= 0:
        # The declarator name is the identifier right before the parameter list's '('.
        j = i + len("__global__")
        bound = None
        while True:
            lb = _find_code(text, mask, "__launch_bounds__", j)
            paren = _find_code(text, mask, "(", j)
            if lb >= 0 and lb < paren:
                open_i = text.index("(", lb)
                close_i = _matching(text, open_i, "(", ")")
                bound = _split_top_level(text[open_i + 1:close_i - 1])[0].strip()
                j = close_i
                continue
            break
        head = text[j:paren]
        names = _IDENT.findall(head)
        if not names:
            raise TranslateError(f"cannot find the name of the kernel at line {_line_of(text, i)}")
        name = names[-1]
        kernels.add(name)
        if bound is not None:
            bounds[name] = bound
        i = _find_code(text, mask, "__global__", paren)
    return kernels, bounds


def _kernel_expr_start(text: str, end: int) -> int:
    """Start of the kernel expression that ends at `end` (just before '<<<'): a possibly
    qualified name with template arguments."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    while True:
        if i > 0 and text[i - 1] == ">":
            depth = 0
            j = i - 1
            while j >= 0:
                if text[j] == ">":
                    depth += 1
                elif text[j] == "<":
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            i = j
        k = i
        while k > 0 and (text[k - 1].isalnum() or text[k - 1] == "_"):
            k -= 1
        if k == i:
            raise TranslateError(f"cannot read the kernel launched at line {_line_of(text, end)}")
        i = k
        if i >= 2 and text[i - 2:i] == "::":
            i -= 2
            continue
        return i


def _newlines(s: str) -> str:
    return "\n" * s.count("\n")


def _rewrite_launches(text: str, kernels: set[str], bounds: dict[str, str]) -> str:
    out, pos = [], 0
    mask = code_mask(text)
    i = _find_code(text, mask, "<<<")
    while i >= 0:
        close = _find_code(text, mask, ">>>", i + 3)
        if close < 0:
            raise TranslateError(f"'<<<' without '>>>' at line {_line_of(text, i)}")
        start = _kernel_expr_start(text, i)
        expr = text[start:i].strip()
        name = _IDENT.findall(expr.split("<", 1)[0])[-1]
        if name not in kernels:
            raise TranslateError(
                f"line {_line_of(text, i)}: launch of '{name}', which no translated file "
                "declares __global__")
        bound = bounds.get(name, "0")
        site = (f'::cuda_emu::LaunchSite{{"{expr}", __FILE__, __LINE__, '
                f"static_cast<unsigned>({bound})}}")
        config = text[i + 3:close]
        out.append(text[pos:start])
        out.append(f"::cuda_emu::launch_kernel({expr}, {site}, {config})")
        out.append(_newlines(text[start:i]))
        pos = close + 3
        i = _find_code(text, mask, "<<<", pos)
    out.append(text[pos:])
    return "".join(out)


def _rewrite_shared(text: str) -> str:
    out, pos = [], 0
    mask = code_mask(text)
    i = _find_code(text, mask, "__shared__")
    while i >= 0:
        # `extern __shared__`: dynamic shared memory.
        before = text[:i].rstrip()
        dynamic = before.endswith("extern") and not (len(before) > 6 and (before[-7].isalnum() or before[-7] == "_"))
        start = len(before) - len("extern") if dynamic else i
        end = text.index(";", i)
        decl = text[i + len("__shared__"):end]
        line = _line_of(text, i)
        parts = [p.strip() for p in _split_top_level(decl)]
        m = re.match(r"^(.*?)([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)$", parts[0], re.S)
        if not m or not m.group(1).strip():
            raise TranslateError(f"line {line}: cannot read the __shared__ declaration {decl!r}")
        type_ = " ".join(m.group(1).split())
        if "__align__" in type_ or "alignas" in type_:
            raise TranslateError(f"line {line}: aligned __shared__ declarations are not emulated")
        declarators = [(m.group(2), m.group(3).strip())]
        for p in parts[1:]:
            dm = re.match(r"^([A-Za-z_]\w*)\s*((?:\[[^\]]*\]\s*)*)$", p)
            if not dm:
                raise TranslateError(f"line {line}: cannot read the __shared__ declarator {p!r}")
            declarators.append((dm.group(1), dm.group(2).strip()))
        if dynamic:
            if len(declarators) != 1 or declarators[0][1].replace(" ", "") != "[]":
                raise TranslateError(f"line {line}: extern __shared__ must declare one T name[]")
            code = f"{type_}* const {declarators[0][0]} = ::cuda_emu::dynamic_shared_as<{type_}>();"
        else:
            code = " ".join(
                f"auto& {name} = ::cuda_emu::shared_var<{type_}{dims}>([] {{}}, __FILE__, __LINE__);"
                for name, dims in declarators)
        out.append(text[pos:start])
        out.append(code)
        out.append(_newlines(text[start:end + 1]))
        pos = end + 1
        i = _find_code(text, mask, "__shared__", pos)
    out.append(text[pos:])
    return "".join(out)


def translate(text: str, path: str, kernels: set[str], bounds: dict[str, str]) -> str:
    body = _rewrite_shared(_rewrite_launches(text, kernels, bounds))
    return f'#line 1 "{path}"\n{body}'


def translate_tree(sources: list[Path], out_dir: Path, root: Path) -> list[Path]:
    """Translates every source, writing out_dir/<path relative to root>; returns the outputs.
    Launch bounds are looked up across all the sources (a kernel may be declared in a .cuh and
    launched from a .cu)."""
    texts = {p: p.read_text() for p in sources}
    kernels, bounds = set(), {}
    for p, t in texts.items():
        k, b = kernel_declarations(t)
        for name, bound in b.items():
            if bounds.get(name, bound) != bound:
                raise TranslateError(f"{p}: kernel '{name}' declared with two launch bounds")
        kernels |= k
        bounds.update(b)
    outputs = []
    for p, t in texts.items():
        dst = out_dir / p.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            new = translate(t, str(p.resolve()), kernels, bounds)
        except TranslateError as e:
            raise TranslateError(f"{p}: {e}") from None
        if not dst.exists() or dst.read_text() != new:  # unchanged files keep their mtime
            dst.write_text(new)
        outputs.append(dst)
    return outputs


if __name__ == "__main__":
    src = Path(sys.argv[1])
    sys.stdout.write(translate(src.read_text(), str(src.resolve()), *kernel_declarations(src.read_text())))
