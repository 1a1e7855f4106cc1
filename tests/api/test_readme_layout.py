"""README's "Layout" section is the map a newcomer reads: it must match the tree. Every folder
of csrc/ and cnnkern/ (at any depth) and of tests/, bench/ is listed there, and everything it
lists exists."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Folders searched at any depth, and folders whose direct subfolders only are listed.
DEEP = ("csrc", "cnnkern")
SHALLOW = ("tests", "bench", "models", "scripts")
SKIP = {"__pycache__"}


def _layout_block():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def _listed_paths():
    paths = []
    for line in _layout_block().splitlines():
        first = line.split(" ", 1)[0]
        if first and not line.startswith(" "):
            paths += [p for p in first.split(",") if p]
    return paths


def _folders():
    found = set()
    for top in DEEP:
        for dirpath, dirnames, _ in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d not in SKIP and not d.startswith(".")]
            found.add(os.path.relpath(dirpath, ROOT) + "/")
    for top in SHALLOW:
        found.add(top + "/")
        for d in os.listdir(os.path.join(ROOT, top)):
            if os.path.isdir(os.path.join(ROOT, top, d)) and d not in SKIP and not d.startswith("."):
                found.add(f"{top}/{d}/")
    return found


def test_every_listed_path_exists():
    listed = _listed_paths()
    assert len(listed) > 20, listed
    missing = [p for p in listed if not os.path.exists(os.path.join(ROOT, p))]
    assert not missing, f"README's Layout lists paths that do not exist: {missing}"


def test_every_folder_is_listed():
    listed = set(_listed_paths())
    unlisted = sorted(f for f in _folders() if f not in listed)
    assert not unlisted, f"folders missing from README's Layout section: {unlisted}"


def test_the_layout_says_where_new_work_goes():
    section = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().split(
        "\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    for what in ("new convolution algorithm", "new op family", "new instruction set"):
        assert re.search(what, section, re.I), what
