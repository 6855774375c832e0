"""Reading a stack's files as text, TOML or YAML, with bounds: whatever the bytes, the
answer is the document or one :class:`ConfigError` naming the file and, where the parser
knows it, the line. Never a traceback, never a hang.

- text that is not UTF-8 is named with the line and column of the first bad byte;
- nesting deeper than :data:`MAX_DEPTH` is refused (a parser would recurse to a crash);
- a YAML document whose aliases expand to more than :data:`MAX_NODES` nodes is refused
  before anything walks it (a few hundred bytes of nested anchors can stand for billions of
  nodes: the "billion laughs").
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from stacktest.errors import ConfigError

#: Deeper than any real stack or compose file (they nest 6 or 7 levels).
MAX_DEPTH = 64
#: Nodes a YAML document may stand for once its aliases are expanded.
MAX_NODES = 100_000


def read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"not UTF-8 text: byte {data[exc.start]:#04x} at line {line}, column {column}",
            file=path,
            line=line,
            hint="save the file as UTF-8",
        ) from None


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    from stacktest.spec.parse import line_from_message

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path,
                          line=line_from_message(str(exc))) from None  # fmt: skip
    except RecursionError:
        raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)",
                          file=path) from None  # fmt: skip
    _check_depth(data, path)
    return data


def _check_depth(node: Any, path: Path, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)", file=path)
    if isinstance(node, dict):
        for value in node.values():
            _check_depth(value, path, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _check_depth(value, path, depth + 1)


def parse_yaml(text: str, path: Path) -> Any:
    """One YAML document (safe types only), bounded in depth and expansion."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)",
                                  file=path, line=mark.line + 1)  # fmt: skip
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        if _expanded(node, sizes) > MAX_NODES:
            raise ConfigError(
                f"its aliases (*name) expand to more than {MAX_NODES:,} values",
                file=path, line=node.start_mark.line + 1,
                hint="a compose file this large is an alias bomb, not a stack: "
                "write the values out or use fewer nested anchors",
            )  # fmt: skip
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", file=path, line=line) from None
    except (TypeError, ValueError, OverflowError) as exc:  # a constructor's (a huge date...)
        raise ConfigError(f"not a value YAML can give: {exc}", file=path) from None
    finally:
        loader.dispose()


def _expanded(node: Any, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (each shared node
    counted where it is used, computed once)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_NODES + 1  # a node inside itself (a recursive alias): too many
    total = 1
    if isinstance(node.value, list):
        for item in node.value:
            parts = item if isinstance(item, tuple) else (item,)
            for part in parts:
                total += _expanded(part, sizes)
                if total > MAX_NODES:
                    break
    sizes[id(node)] = total
    return total
