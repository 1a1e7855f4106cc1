"""What the `cnnkern` command and the bench scripts print, through rich.

One place decides how wide the output is (the terminal's width up to 120 columns; 120 when
stdout is a file or a pipe, so logs read the same everywhere), builds the tables (borderless,
a rule under the header, two spaces between columns, numbers right-aligned, only the columns
allowed to wrap wrapping when a table is wider than that), renders them to plain text (callers
and tests get strings, logs get no colour codes), numbers footnotes, and shows progress: a live
bar on a terminal, one plain line per step otherwise (no carriage-return frames in logs).
"""

from __future__ import annotations

import io
import shutil
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, TextIO

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

MAX_WIDTH = 120

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
# Where stdout cannot encode them (an ASCII-only log), the few non-ASCII characters we print
# are spelled in ASCII rather than failing the run after minutes of benchmarking.
_ASCII = {ord(s): f"^{d}" for d, s in zip("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")}
_ASCII.update({ord("─"): "-", ord("×"): "x"})


def _isatty(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def output_width(file: Optional[TextIO] = None) -> int:
    """Columns to lay out for: the terminal's, at most MAX_WIDTH; MAX_WIDTH off a terminal."""
    if _isatty(file or sys.stdout):
        return max(40, min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns))
    return MAX_WIDTH


def table(columns: Sequence[str], *, right: Iterable[str] = (), wrap: Iterable[str] = (),
          title: Optional[str] = None) -> Table:
    """An empty table with these column headers ("\\n" makes a two-line header). Columns in
    `right` are right-aligned; only those in `wrap` may wrap (the others keep their width)."""
    right, wrap = set(right), set(wrap)
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
              title=title, title_justify="left", title_style="none", header_style="none")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", no_wrap=c not in wrap,
                     overflow="fold")
    return t


def add_row(t: Table, cells: Sequence[object]) -> None:
    """Adds a row of plain text: cells are never read as rich markup ("[1]" stays "[1]")."""
    t.add_row(*(Text("" if c is None else str(c)) for c in cells))


def render(*items: RenderableType, width: Optional[int] = None) -> str:
    """Tables and paragraphs (str: wrapped at the width, never read as markup) as plain text,
    without trailing spaces."""
    buf = io.StringIO()
    console = Console(file=buf, width=width or output_width(), color_system=None, highlight=False,
                      markup=False, emoji=False)
    for item in items:
        console.print(item)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").split("\n"))


def echo(text: str, file: Optional[TextIO] = None) -> None:
    """print(text), in ASCII spellings where the file's encoding lacks a character."""
    file = file or sys.stdout
    try:
        file.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(file, "encoding", None) or "ascii"
        file.write(text.translate(_ASCII).encode(encoding, "replace").decode(encoding) + "\n")
    file.flush()


def superscript(n: int) -> str:
    return str(n).translate(_SUPERSCRIPT)


class Footnotes:
    """Numbers notes in the order of first use; the same text keeps its number."""

    def __init__(self) -> None:
        self._numbers: Dict[str, int] = {}

    def tag(self, text: str, prefix: str = "n/a") -> str:
        """`prefix` with the note's number as a superscript: "n/a¹"."""
        n = self._numbers.setdefault(text, len(self._numbers) + 1)
        return prefix + superscript(n)

    def lines(self) -> List[str]:
        """"¹ text" per note, in number order."""
        return [f"{superscript(n)} {text}" for text, n in self._numbers.items()]


class Progress:
    """Progress over `total` steps: a live bar on a terminal; elsewhere one plain line as
    each step starts, "[3/13] vgg16.conv3_1 (12 s)", so a log gets no carriage returns."""

    def __init__(self, total: int, file: Optional[TextIO] = None, enabled: bool = True):
        self.total, self.file, self.done = total, file or sys.stderr, 0
        self.start = time.monotonic()
        self._bar = None
        if enabled and _isatty(self.file):
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TextColumn, TimeElapsedColumn)

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(file=self.file), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("", total=total)
        self.enabled = enabled

    def step(self, label: str) -> None:
        """Step `label` starts (the previous one, if any, is done)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=label)
        elif self.enabled:
            echo(f"[{self.done + 1}/{self.total}] {label} ({time.monotonic() - self.start:.0f} s)",
                 self.file)
        self.done += 1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
