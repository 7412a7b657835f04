"""YAML documents read defensively, remembering the source line of every value; JSON Schema errors at those lines.

A spec or project file is input, not code: it is read only from a regular file and at most MAX_FILE_BYTES,
aliases may expand it to at most MAX_NODES values, and whatever is wrong with it is one SpecError line per
problem, 'file:line: message', with any value it quotes cut to SHOWN_CHARS (shown()). Never a traceback."""

from __future__ import annotations

import os
import re
import reprlib
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from .errors import SpecError

JsonPath = tuple  # of str keys and int indexes
# libyaml's composer when present (several times faster on hundreds of spec files); its nodes carry the same marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a spec is well under 10 KiB
MAX_NODES = 10_000  # values after alias expansion; a spec holds about a hundred (this stops "billion laughs")
MAX_DEPTH = 32  # nesting, merges included; a spec needs five levels
SHOWN_CHARS = 60  # of a value quoted in a message

_YAML = "tag:yaml.org,2002:"
_MERGE = _YAML + "merge"
_VALUE = _YAML + "value"  # the '=' key of YAML 1.1, which SafeLoader reads as the string '='
_SCALAR_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp", "binary")}
_COLLECTION_TAGS = {yaml.MappingNode: _YAML + "map", yaml.SequenceNode: _YAML + "seq"}
# What a YAML stream may not hold (YAML 1.1 printable set) and what no PostgreSQL text can (NUL).
_NOT_YAML = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


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

    def problem(self, at: JsonPath, message: str) -> str:
        """One message line about the value at a path: 'file:line: path: message', as schema errors read."""
        return f"{self.where(at)}: {dotted(at)}: {message}" if at else f"{self.where(at)}: {message}"


def load(path: Path) -> Document:
    text = _decode(path, _read(path))
    node = _compose(path, text)
    if node is None:
        raise SpecError(f"{path}:1: the file is empty")
    doc = Document(path=path, data=None)
    doc.data = _Converter(doc).value(node, ())
    return doc


def _read(path: Path) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of a regular file: never a FIFO (it would block), a device or /proc."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)  # a FIFO opens without a writer
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise SpecError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        info = os.fstat(fd)  # of what was opened, not of what the name points to by now
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{path}:1: not a regular file; name a spec file or a directory of them")
        if info.st_size > MAX_FILE_BYTES:
            raise SpecError(f"{path}:1: larger than {MAX_FILE_BYTES >> 20} MiB; not a spec file")
        try:
            data = _read_all(fd, MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    # Kernel files (/proc/self/environ: the environment, secrets included) say size 0 and still have content.
    if info.st_size == 0 and data:
        raise SpecError(f"{path}:1: not a regular file (it reports no size, like a /proc file); not read")
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"{path}:1: larger than {MAX_FILE_BYTES >> 20} MiB; not a spec file")
    return data


def _read_all(fd: int, limit: int) -> bytes:
    """Up to limit bytes, read straight from the descriptor (a spec is one read; no buffered file object per file)."""
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text that YAML can hold; the first offending byte or character is named by line, never shown."""
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SpecError(f"{path}:{line}: a NUL byte; not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    bad = _NOT_YAML.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise SpecError(f"{path}:{line}: control character U+{ord(bad.group()):04X} is not allowed in YAML")
    return text


def _compose(path: Path, text: str) -> Optional[yaml.Node]:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(f"{path}:{line}: invalid YAML: {one_line(str(exc.problem or exc.context))}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}:1: invalid YAML: {one_line(str(exc).splitlines()[0])}") from None
    except (ValueError, RecursionError):  # the pure-Python scanner on an escape such as "\U00110000", or deep nesting
        raise SpecError(f"{path}:1: invalid YAML: a value or nesting that YAML cannot hold") from None


class _Converter:
    """Nodes to plain values. An alias is expanded where it is used, so every expansion counts against
    MAX_NODES, and a node met again inside itself (an alias to an ancestor) is refused."""

    def __init__(self, doc: Document):
        self.doc, self.left, self.open = doc, MAX_NODES, set()

    def fail(self, node: yaml.Node, message: str, at: JsonPath = ()) -> SpecError:
        where = f"{self.doc.path}:{node.start_mark.line + 1}"
        return SpecError(f"{where}: {dotted(at)}: {message}" if at else f"{where}: {message}")

    @contextmanager
    def inside(self, node: yaml.Node) -> Iterator[None]:
        """While converting node: charge it to the budget and refuse cycles, depth and unusual tags."""
        self.enter(node)
        try:
            yield
        finally:
            self.open.discard(id(node))

    def enter(self, node: yaml.Node) -> None:
        """inside()'s checks, for value(), which runs once per value and is cheaper without a context manager."""
        self.left -= 1
        if self.left < 0:
            raise self.fail(node, f"aliases expand this file past {MAX_NODES} values; refused (an alias bomb?)")
        if id(node) in self.open:
            raise self.fail(node, "an alias refers to a value that contains it; refused")
        if len(self.open) >= MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
        expected = _COLLECTION_TAGS.get(type(node))
        if expected and node.tag != expected:
            raise self.fail(node, f"tag {shown(_short(node.tag))} is not allowed in a spec (plain YAML only)")
        self.open.add(id(node))

    def value(self, node: yaml.Node, at: JsonPath) -> Any:
        self.doc.lines.setdefault(at, node.start_mark.line + 1)
        self.enter(node)
        try:
            if isinstance(node, yaml.MappingNode):
                out = {}
                for key, (key_node, value_node) in self.pairs(node).items():
                    self.doc.lines[at + (key,)] = key_node.start_mark.line + 1
                    out[key] = self.value(value_node, at + (key,))
                return out
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, at + (i,)) for i, item in enumerate(node.value)]
            return self.scalar(node, at)
        finally:
            self.open.discard(id(node))

    def pairs(self, node: yaml.MappingNode) -> dict:
        """key -> (key node, value node), with '<<' merges as SafeLoader applies them: the mapping's own keys
        win, then later '<<' keys over earlier ones, and within a '<<' list earlier mappings over later ones."""
        merged: dict = {}
        own: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                for source in reversed(self.merge_sources(value_node)):
                    with self.inside(source):
                        merged.update(self.pairs(source))
                continue
            key = self.key(key_node)
            if key in own:
                raise self.fail(key_node, f"duplicate key {shown(key)}")
            own[key] = (key_node, value_node)
        merged.update(own)
        return merged

    def merge_sources(self, node: yaml.Node) -> list:
        if isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.MappingNode) for n in node.value):
            with self.inside(node):
                return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [node]
        raise self.fail(node, "'<<' merges a mapping or a list of mappings")

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "a mapping key must be a plain value")
        self.left -= 1
        key = "=" if node.tag == _VALUE else self.scalar(node)
        if not isinstance(key, str):
            raise self.fail(node, f"keys must be strings, got {shown(key)}")
        return key

    def scalar(self, node: yaml.ScalarNode, at: JsonPath = ()) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"tag {shown(_short(node.tag))} is not allowed in a spec (plain YAML only)", at)
        try:
            value = _CONSTRUCTOR.yaml_constructors[node.tag](_CONSTRUCTOR, node)
        except Exception:  # noqa: BLE001 - the constructors assume well-formed text: any failure is a bad value
            raise self.fail(node, f"{shown(node.value)} is not a valid {_short(node.tag)[2:]}", at) from None
        if isinstance(value, int) and value.bit_length() > 332:  # 100 digits; sexagesimal ints grow without bound
            raise self.fail(node, "a number of more than 100 digits", at)
        if isinstance(value, str) and _UNSTORABLE.search(value):
            raise self.fail(node, f"{shown(value)} holds a NUL or a lone surrogate, which PostgreSQL cannot store", at)
        return value


def _short(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS + 2
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 4


def shown(value: Any) -> str:
    """A value as a message quotes it: cut to SHOWN_CHARS with an ellipsis and kept on one line, so a 10 MB
    name cannot flood the terminal nor a newline in a key split one problem over two lines."""
    text = value if isinstance(value, str) else _REPR.repr(value)
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "…"
    return f"'{one_line(text)}'" if isinstance(value, str) else one_line(text)


def one_line(text: str, limit: int = 300) -> str:
    """text with every unprintable character (newlines, NUL, bidi controls) escaped, cut to limit."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape", "backslashreplace").decode() for c in text)


def validator_for(schema: dict) -> Any:
    """jsonschema's validator for reports, reading 'pattern' as the generated check does ('$' ends the
    string, as in JavaScript; Python's '$' would also match before a final newline), so the two agree."""
    import jsonschema

    def pattern(validator: Any, pattern: str, instance: Any, _schema: dict) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not re.search(_strict_end(pattern), instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")

    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
    return cls(schema)


def _strict_end(pattern: str) -> str:
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def schema_errors(doc: Document, validator: Any) -> list[str]:
    """Every schema violation as 'file:line: path: message', sorted by position in the file."""
    found = []
    for error in validator.iter_errors(doc.data):
        at = tuple(error.absolute_path)
        if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            allowed |= set(_referenced_properties(error.schema, validator.schema))
            for key in sorted(set(error.instance) - allowed):
                found.append((doc.line(at + (key,)), at, f"unknown key {shown(key)}"))
            continue
        if "propertyNames" in error.schema_path:  # about a key: at its own line
            found.append((doc.line(at + (error.instance,)), at, _message(error)))
            continue
        if error.validator == "oneOf" and not at and isinstance(error.instance, dict):
            # Which of the root's keys clash (interval and width): at the later one's line.
            present = [k for alt in error.validator_value for k in alt.get("required", ()) if k in error.instance]
            if len(present) > 1:
                found.append((max(doc.line((k,)) for k in present), at,
                              f"{' and '.join(map(shown, present))} exclude each other: a table has an interval (a time"
                              " key) or a width (an id key), not both"))
                continue
        found.append((doc.line(at), at, _message(error, validator.schema)))
    found.sort(key=lambda item: (item[0], [str(p) for p in item[1]]))
    return [f"{doc.path}:{line}: {dotted(at)}: {msg}" if at else f"{doc.path}:{line}: {msg}" for line, at, msg in found]


def _referenced_properties(schema: dict, root: dict) -> list[str]:
    ref = schema.get("$ref")
    if not ref or not ref.startswith("#/"):
        return []
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return list(target.get("properties", {})) + _referenced_properties(target, root)


def _message(error: Any, root: Optional[dict] = None) -> str:
    if error.validator == "oneOf" and root is not None:
        return _alternatives(error, root)
    if error.validator == "enum":
        return f"{shown(error.instance)} is not one of {', '.join(map(str, error.validator_value))}"
    # A string schema with a pattern says in its description what it wants, also when too short or long.
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator in ("pattern", "minLength", "maxLength") and {"pattern", "description"} <= set(schema):
        return f"{shown(error.instance)} is not {schema['description']}"
    message = error.message
    full = repr(error.instance)  # jsonschema's messages open with the whole value
    if message.startswith(full):
        message = shown(error.instance) + message[len(full):]
    return one_line(message)


def _alternatives(error: Any, root: dict) -> str:
    """A value that fits none of a oneOf's schemas (or, for the root, fits two): what each alternative wants."""
    wanted = []
    for alternative in error.validator_value:
        target = _resolve(alternative, root)
        if "required" in target:
            wanted.append(f"a key {' and '.join(map(shown, target['required']))}")
        elif "enum" in target:
            wanted.append(", ".join(map(str, target["enum"])))
        elif target.get("type") == "null":
            wanted.append("null")
        elif "description" in target:
            wanted.append(target["description"])
    if not error.absolute_path and all(w.startswith("a key") for w in wanted):
        return f"exactly one of {' or '.join(w[len('a key '):] for w in wanted)} is needed (an interval for a time key, a width for an id key)"
    return one_line(f"{shown(error.instance)} is not {', nor '.join(wanted)}")


def _resolve(schema: Any, root: dict) -> dict:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/"):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = target
    return schema if isinstance(schema, dict) else {}


def dotted(at: JsonPath) -> str:
    out = ""
    for part in at:
        out += f"[{part}]" if isinstance(part, int) else (f".{shown(part)[1:-1]}" if out else shown(part)[1:-1])
    return out
