"""YAML documents that remember the source line of every value, and JSON Schema errors reported at those lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .errors import SpecError

JsonPath = tuple  # of str keys and int indexes
# libyaml's composer when present (several times faster on hundreds of spec files); its nodes carry the same marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """A parsed YAML file: plain data plus the 1-based line of every mapping key and value."""

    path: Path
    data: Any
    lines: dict = field(default_factory=dict)  # JsonPath -> line

    def line(self, at: JsonPath) -> int:
        """The line of the value at a path, or of its nearest ancestor that has one."""
        while at not in self.lines and at:
            at = at[:-1]
        return self.lines.get(at, 1)

    def where(self, at: JsonPath) -> str:
        return f"{self.path}:{self.line(at)}"


def load(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    doc = Document(path=path, data=None)
    if node is None:
        raise SpecError(f"{path}:1: the file is empty")
    doc.data = _convert(node, (), doc)
    return doc


def _convert(node: yaml.Node, at: JsonPath, doc: Document) -> Any:
    doc.lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, doc)
            if not isinstance(key, str):
                raise SpecError(f"{doc.path}:{key_node.start_mark.line + 1}: keys must be strings, got {key!r}")
            if key in out:
                raise SpecError(f"{doc.path}:{key_node.start_mark.line + 1}: duplicate key '{key}'")
            doc.lines[at + (key,)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, at + (key,), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, at + (i,), doc) for i, item in enumerate(node.value)]
    return _scalar(node, doc)


def _scalar(node: yaml.Node, doc: Document) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise SpecError(f"{doc.path}:{node.start_mark.line + 1}: a mapping key must be a plain value")
    return _CONSTRUCTOR.construct_object(node, deep=True)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def schema_errors(doc: Document, validator: Any, known_keys: dict[JsonPath, Iterable[str]] | None = None) -> list[str]:
    """Every schema violation as 'file:line: path: message', sorted by position in the file."""
    found = []
    for error in validator.iter_errors(doc.data):
        at = tuple(error.absolute_path)
        if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            allowed |= set(_referenced_properties(error.schema, validator.schema))
            for key in sorted(set(error.instance) - allowed):
                found.append((doc.line(at + (key,)), at, f"unknown key '{key}'"))
            continue
        found.append((doc.line(at), at, _message(error)))
    found.sort(key=lambda item: (item[0], [str(p) for p in item[1]]))
    return [f"{doc.path}:{line}: {_dotted(at)}: {msg}" if at else f"{doc.path}:{line}: {msg}" for line, at, msg in found]


def _referenced_properties(schema: dict, root: dict) -> list[str]:
    ref = schema.get("$ref")
    if not ref or not ref.startswith("#/"):
        return []
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return list(target.get("properties", {})) + _referenced_properties(target, root)


def _message(error: Any) -> str:
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "pattern" and "description" in error.schema:
        return f"{error.instance!r} is not {error.schema['description']}"
    return error.message


def _dotted(at: JsonPath) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
