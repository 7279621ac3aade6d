"""Hardened YAML reading: manifest files to plain Python documents, nothing Knative-specific.

Safe constructors only, files of at most 10 MiB, bounded nesting, node count and alias expansion,
and a key given twice in one mapping is refused, so hostile input fails fast with a
:class:`~cascade.broker.topology.errors.ManifestError` that names the file and line.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from cascade.broker.topology.errors import ManifestError

__all__ = [
    "MANIFEST_SUFFIXES",
    "MAX_DOCUMENTS_PER_FILE",
    "MAX_FILE_BYTES",
    "MAX_NESTING",
    "expand_paths",
    "read_documents",
    "read_text",
]

MAX_FILE_BYTES: Final = 10 * 1024 * 1024
MAX_DOCUMENTS_PER_FILE: Final = 10_000
MAX_NODES_PER_FILE: Final = 500_000
MAX_NESTING: Final = 64
# A document may reuse anchors, but may not expand to much more than it spells out
# ("billion laughs"), nor refer to itself.
MIN_EXPANSION_BUDGET: Final = 10_000
EXPANSION_FACTOR: Final = 10

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


def expand_paths(paths: Sequence[Path], notices: list[str]) -> Iterator[tuple[Path, str]]:
    """Files to read with the name to show; a directory gives its manifest files, sorted."""
    for path in paths:
        if path.is_dir():
            try:
                children = sorted(
                    p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
                )
            except OSError as err:
                raise ManifestError(
                    str(path), f"cannot read directory: {err.strerror or err}"
                ) from None
            if not children:
                notices.append(f"no {'/'.join(MANIFEST_SUFFIXES)} files in directory {path}")
            for child in children:
                yield child, str(child)
        else:
            yield path, str(path)


def read_text(path: Path, shown: str) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(shown, "file not found") from None
    except OSError as err:
        raise ManifestError(shown, f"cannot read file: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ManifestError(
            shown, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; split it"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ManifestError(shown, "not UTF-8 text", line=line) from None


class _BoundedComposer(Composer):
    """PyYAML's composer with limits on nesting depth and node count.

    Composing is recursive; the limit keeps it far from Python's recursion limit, and libyaml's
    own composer (which crashes the process on deep nesting) is never used.
    """

    nodes_composed = 0
    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.nodes_composed += 1
        if self.nodes_composed > MAX_NODES_PER_FILE:
            raise ComposerError(
                None, None, f"more than {MAX_NODES_PER_FILE} YAML nodes", self._mark()
            )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", self._mark()
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _mark(self) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        return None if event is None else event.start_mark


class _StrictConstructor(SafeConstructor):
    """Safe constructors that refuse a key given twice in one mapping.

    PyYAML would keep the last value silently; ``kubectl apply`` (strict field validation)
    rejects duplicate fields, and a second ``delivery:`` in a Trigger is surely a mistake.
    Keys brought in by a ``<<`` merge may still be overridden, as YAML intends.
    """

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value[:60]!r}",
                        key_node.start_mark,
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

try:
    from yaml._yaml import CParser as _LibYamlParser

    class _Loader(_BoundedComposer, _LibYamlParser, _StrictConstructor, Resolver):
        """libyaml scans and parses (fast, iterative); Python composes and constructs."""

        def __init__(self, text: str) -> None:
            _LibYamlParser.__init__(self, text)
            _StrictConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(  # type: ignore[no-redef]
        _BoundedComposer,
        Reader,
        Scanner,
        Parser,
        _StrictConstructor,
        Resolver,
    ):
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _StrictConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)


def _yaml_error(shown: str, text: str, err: Exception) -> ManifestError:
    """A ManifestError with the line and column of a PyYAML error."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        message = "; ".join(str(p) for p in (err.context, err.problem) if p)
        if mark is not None:
            return ManifestError(
                shown, f"invalid YAML: {message}", line=mark.line + 1, column=mark.column + 1
            )
        return ManifestError(shown, f"invalid YAML: {message}")
    if isinstance(err, ReaderError):
        line = text.count("\n", 0, err.position) + 1
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or "\0")
        return ManifestError(
            shown, f"invalid YAML: character U+{char:04X} is not allowed", line=line
        )
    return ManifestError(shown, f"invalid YAML: {err}")


def read_documents(shown: str, text: str) -> Iterator[tuple[int, object]]:
    """(first line, value) of every non-empty YAML document in ``text``."""
    try:
        loader = _Loader(text)  # the pure-Python reader already checks characters here
    except yaml.YAMLError as err:
        raise _yaml_error(shown, text, err) from None
    try:
        count = 0
        while True:
            line: int | None = None
            try:
                if not loader.check_node():
                    return
                before = loader.nodes_composed
                node = loader.get_node()
                if node is None:  # pragma: no cover - check_node said there is one
                    return
                line = node.start_mark.line + 1
                data = loader.construct_document(node)
            except yaml.YAMLError as err:
                raise _yaml_error(shown, text, err) from None
            except (ValueError, OverflowError) as err:
                # A scalar PyYAML recognized but cannot build: the date 2024-02-30, !!int x.
                raise ManifestError(shown, f"invalid YAML value: {err}", line=line) from None
            except (IndexError, KeyError, TypeError, AttributeError):
                # PyYAML's constructors fail this way on some explicit tags: !!int '', !!bool x.
                raise ManifestError(
                    shown, "invalid YAML value: a scalar does not fit its explicit tag", line=line
                ) from None
            except RecursionError:
                raise ManifestError(shown, "YAML nested too deeply", line=line) from None
            count += 1
            if count > MAX_DOCUMENTS_PER_FILE:
                raise ManifestError(
                    shown, f"more than {MAX_DOCUMENTS_PER_FILE} YAML documents; split the file"
                )
            budget = max(MIN_EXPANSION_BUDGET, EXPANSION_FACTOR * (loader.nodes_composed - before))
            problem = _expansion_problem(data, budget)
            if problem:
                raise ManifestError(shown, problem, line=line)
            if data is not None:  # an empty document, e.g. after a trailing '---'
                yield line, data
    finally:
        loader.dispose()


def _expansion_problem(data: object, budget: int) -> str | None:
    """Why a document built through YAML aliases is unsafe to walk, or None if it is fine."""
    stack: list[tuple[object, int]] = [(data, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > budget:
            return f"document expands to more than {budget} values through YAML aliases"
        if depth > MAX_NESTING:
            return (
                f"document is nested deeper than {MAX_NESTING} levels "
                "(a YAML alias that refers to itself?)"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None
