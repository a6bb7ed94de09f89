"""Malformed submissions, generated: what a broken upload, a bad editor or a hostile student hands in.

`malformed_submissions(release, count, seed)` yields (label, writer) pairs; writer(path) puts one
submission at `path` (a file, a link, a FIFO, a device, a folder...). Every one of them must be
failed by the grader with a specific reason, never graded and never an internal error: the
test in test_robust_batches.py and benchmarks/fuzz_batch.py grade them as one batch.
"""

from __future__ import annotations

import codecs
import copy
import json
import os
import random
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

Writer = Callable[[Path], None]

WRONG_VALUES = [None, 5, -1.5, True, "x", "", [], {}, [1, "a"], {"a": None}]


def _json_writer(document) -> Writer:
    def write(path: Path) -> None:
        path.write_text(json.dumps(document), encoding="utf-8")

    return write


def _bytes_writer(data: bytes) -> Writer:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def _nested(depth: int, list_like: bool):
    value: object = "bottom"
    for _ in range(depth):
        value = [value] if list_like else {"a": value}
    return value


def _deep_json(depth: int, list_like: bool) -> str:
    """JSON nested `depth` levels, written as text (json.dumps itself recurses)."""
    opening, closing = ("[", "]") if list_like else ('{"a": ', "}")
    return opening * depth + '"bottom"' + closing * depth


def _kinds(release: dict, text: str, rng: random.Random) -> list[tuple[str, Callable[[], Writer]]]:
    def mutated(change: Callable[[dict], None]) -> Callable[[], Writer]:
        def make() -> Writer:
            document = copy.deepcopy(release)
            change(document)
            return _json_writer(document)

        return make

    def some_cell(document: dict) -> dict:
        return rng.choice(document["cells"])

    def set_path(keys: tuple, value) -> Callable[[dict], None]:
        def change(document: dict) -> None:
            target = some_cell(document) if keys[0] == "<cell>" else document
            for key in keys[1 if keys[0] == "<cell>" else 0 : -1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = copy.deepcopy(value)

        return change

    def delete(keys: tuple) -> Callable[[dict], None]:
        def change(document: dict) -> None:
            target = some_cell(document) if keys[0] == "<cell>" else document
            target.pop(keys[-1], None)

        return change

    def deep_in(where: str, depth: int, list_like: bool) -> Callable[[], Writer]:
        def make() -> Writer:
            marker = "__DEEP__"
            document = copy.deepcopy(release)
            if where == "metadata":
                document["metadata"]["deep"] = marker
            else:
                some_cell(document)["metadata"]["deep"] = marker
            data = json.dumps(document).replace(f'"{marker}"', _deep_json(depth, list_like))
            return _bytes_writer(data.encode())

        return make

    def surrogate_in(where: str) -> Callable[[], Writer]:
        def make() -> Writer:
            document = copy.deepcopy(release)
            lone = rng.choice(["\\ud800", "\\udfff", "\\udc80"])
            if where == "source":
                some_cell(document)["source"] = "x = 1  # __LONE__"
            elif where == "key":
                document["metadata"]["__LONE__"] = 1
            else:
                document["metadata"]["note"] = "__LONE__"
            return _bytes_writer(json.dumps(document).replace("__LONE__", lone).encode())

        return make

    def truncated() -> Writer:
        data = text.encode()
        return _bytes_writer(data[: rng.randrange(0, len(data) - 3)])

    def random_bytes() -> Writer:
        return _bytes_writer(rng.randbytes(rng.choice([1, 17, 512, 40_000])))

    def encoded(codec: str) -> Callable[[], Writer]:
        def make() -> Writer:
            if codec == "utf-8-sig":
                return _bytes_writer(codecs.BOM_UTF8 + text.encode())
            if codec == "latin-1":  # an é written by an editor in Latin-1
                return _bytes_writer(text.replace("Tiny lab", "Tiny lab \u00e9t\u00e9").encode("latin-1"))
            return _bytes_writer(text.encode(codec))

        return make

    def huge_source() -> Writer:
        document = copy.deepcopy(release)
        some_cell(document)["source"] = "#" * (21 * 2**20)  # over the 20 MiB cap
        return _json_writer(document)

    def big_integer() -> Writer:
        return _bytes_writer(text.replace('"nbformat_minor": 5', '"nbformat_minor": 1' + "0" * 5000, 1).encode())

    def constant(name: str) -> Callable[[], Writer]:
        return lambda: _bytes_writer(text.replace('"nbformat_minor": 5', f'"nbformat_minor": {name}', 1).encode())

    kinds: list[tuple[str, Callable[[], Writer]]] = [
        ("truncated", truncated),
        ("random bytes", random_bytes),
        ("empty file", lambda: _bytes_writer(b"")),
        ("whitespace", lambda: _bytes_writer(b"  \n\t ")),
        ("utf-16", encoded("utf-16")),
        ("utf-32", encoded("utf-32")),
        ("utf-8 with BOM", encoded("utf-8-sig")),
        ("latin-1", encoded("latin-1")),
        ("huge source", huge_source),
        ("integer of 5000 digits", big_integer),
        ("NaN", constant("NaN")),
        ("Infinity", constant("Infinity")),
        ("surrogate in source", surrogate_in("source")),
        ("surrogate in key", surrogate_in("key")),
        ("surrogate in metadata", surrogate_in("metadata")),
    ]
    for top in (None, 5, "notebook", [], [release]):
        kinds.append((f"top level {type(top).__name__}", lambda top=top: _json_writer(top)))
    for key in ("cells", "metadata", "nbformat", "nbformat_minor"):
        kinds.append((f"no {key}", mutated(delete((key,)))))
        for value in WRONG_VALUES:
            if key == "metadata" and isinstance(value, dict):
                continue  # any object is valid notebook metadata
            if release.get(key) == value and type(release.get(key)) is type(value):
                continue  # the release's own value
            if key == "cells" and value == []:
                continue  # a notebook without cells is valid (its test cells are restored)
            kinds.append((f"{key} = {value!r}", mutated(set_path((key,), value))))
    for version in (0, 1, 2, 3, 5, 99, -4, 4.0):
        kinds.append((f"nbformat {version!r}", mutated(set_path(("nbformat",), version))))
    kinds.append(
        (
            "nbformat 3 layout",
            lambda: _json_writer({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": "x"}),
        )
    )
    for key in ("cell_type", "metadata", "source"):
        kinds.append((f"cell without {key}", mutated(delete(("<cell>", key)))))
        for value in WRONG_VALUES:
            if key == "source" and (value in ("", "x") or value == []):
                continue  # strings (and lists of strings) are valid sources
            if key == "metadata" and isinstance(value, dict):
                continue  # any object is valid cell metadata
            kinds.append((f"cell {key} = {value!r}", mutated(set_path(("<cell>", key), value))))
    kinds.append(("cell_type unknown", mutated(set_path(("<cell>", "cell_type"), "spreadsheet"))))
    kinds.append(
        (
            "outputs not a list",
            mutated(lambda d: [c.__setitem__("outputs", "x") for c in d["cells"] if c["cell_type"] == "code"]),
        )
    )
    kinds.append(
        (
            "execution_count text",
            mutated(
                lambda d: [c.__setitem__("execution_count", "one") for c in d["cells"] if c["cell_type"] == "code"]
            ),
        )
    )
    for depth in (101, 500, 3000, 20000):
        for list_like in (False, True):
            shape = "lists" if list_like else "objects"
            kinds.append((f"metadata {depth} {shape} deep", deep_in("metadata", depth, list_like)))
            kinds.append((f"cell metadata {depth} {shape} deep", deep_in("cell", depth, list_like)))
    return kinds


def _special_files(honest: Path) -> list[tuple[str, Writer]]:
    """Submissions that are not regular files (the coordinator must not read through them)."""

    def link_to(target: str) -> Writer:
        return lambda path: path.symlink_to(target)

    def fifo(path: Path) -> None:
        os.mkfifo(path)

    def folder(path: Path) -> None:
        path.mkdir()
        (path / "inside.ipynb").write_text("{}")

    def device(path: Path) -> None:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers

    def unix_socket(path: Path) -> None:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()

    return [
        ("link to an honest notebook", link_to(str(honest))),
        ("link to /etc/passwd", link_to("/etc/passwd")),
        ("dangling link", link_to("/nonexistent/x.ipynb")),
        ("link to itself", link_to("tiny.ipynb")),
        ("FIFO", fifo),
        ("folder", folder),
        ("character device", device),
        ("unix socket", unix_socket),
    ]


def malformed_submissions(release: dict, count: int, honest: Path, seed: int = 0) -> Iterator[tuple[str, Writer]]:
    """`count` malformed submissions of the notebook `release` (parsed JSON): every kind at least
    once (special files first), then kinds drawn at random with fresh random content."""
    rng = random.Random(seed)
    text = json.dumps(release, indent=1) + "\n"
    specials = _special_files(honest)
    kinds = _kinds(release, text, rng)
    produced = 0
    for label, writer in specials:
        if produced == count:
            return
        yield label, writer
        produced += 1
    order = list(kinds) + [rng.choice(kinds) for _ in range(max(0, count - produced - len(kinds)))]
    for label, make in order:
        if produced == count:
            return
        yield label, make()
        produced += 1
