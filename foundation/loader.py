"""The typed-YAML loader: a YAML file plus `key=value` overrides, read once into nested dataclasses.

It knows nothing of lvmae's sections (those are `foundation.schema`): give `load` a root dataclass
whose fields are values or further dataclasses. Every field carries a docstring (read back by
`field_docs`) and `__post_init__` checks values with `check`. Code past the loader reads attributes,
never raw dicts.

Errors name the key: an unknown key suggests the closest valid one, a wrong type names the key,
the value and the expected type, a bad value names the key, the value and what is allowed.
Relative paths resolve against the directory of the config file (the working directory when
there is none). A path written `lvmae:FOLDER/FILE` names a file shipped inside the installed package
(`lvmae:toyworld/weights/toyclip.pt`, the stand-in encoder's weights): it resolves to wherever the
package is installed, whatever the working directory (see `shipped`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import math
import sys
import types
import typing
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from lvmae.foundation.errors import LvmaeError


class ConfigError(LvmaeError, ValueError):
    """A config key or value is wrong; the message names the key."""


class _BadValue(ValueError):
    """Raised by `check` in `__post_init__`; the loader adds the section path to the key."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(key, value, allowed)
        self.key, self.value, self.allowed = key, value, allowed

    def __str__(self) -> str:
        return f"{self.key}: {self.value!r} is not allowed; expected {self.allowed}"


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """In a section's `__post_init__`: refuse `value` of field `key` unless `ok`; `allowed` says what is."""
    if not ok:
        raise _BadValue(key, value, allowed)


class Uri(str):
    """A store location: a local path (resolved like any path) or an fsspec URI such as memory://x."""


class PathOrTag(str):
    """A file path if it names an existing file (resolved against the config), else a name or tag."""


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _Raw:
    """A `--set` value: the text as typed plus its YAML reading (str fields keep the text)."""

    def __init__(self, text: str):
        self.text = text
        try:
            self.parsed = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            self.parsed = text

    def __repr__(self):
        return repr(self.text)


T = TypeVar("T")


def load(root: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> tuple[T, Path | None]:
    """Read `path` (None: the built-in defaults), apply `key=value` overrides, check all; returns the
    `root` dataclass and the resolved file path.

    Raises ConfigError naming the offending key.
    """
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        raw = loaded
        base = path.parent
    for item in overrides:
        _apply_override(raw, item)
    return _build(root, raw, prefix="", base=base, where=str(path) if path else "defaults"), path


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (e.g. pretrain.mask_ratio=0.75), got {item!r}")
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = _Raw(value)


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _build(cls: Any, raw: Any, *, prefix: str, base: Path, where: str):
    if isinstance(raw, _Raw):
        raw = raw.parsed
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {raw!r}")
    fields = {f.name: f for f in _public_fields(cls)}
    hints = _type_hints(cls)
    for key, value in raw.items():
        if key not in fields:
            origin = "--set" if _has_override(value) else where
            raise ConfigError(_unknown_key_message(str(key), value, prefix, list(fields), origin))
    kwargs = {}
    for name in fields:
        tp: Any = hints[name]
        if name in raw:
            kwargs[name] = _coerce(raw[name], tp, f"{prefix}{name}", base, where)
        elif dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, {}, prefix=f"{prefix}{name}.", base=base, where=where)
        elif _is_path_type(tp) and _default(fields[name]) is not None:
            # Defaults are relative to the config file too, like the values written in it.
            kwargs[name] = _coerce(_plain(_default(fields[name])), tp, f"{prefix}{name}", base, where)
    try:
        return cls(**kwargs)
    except _BadValue as bad:
        full = f"{prefix}{bad.key}"
        doc = field_docs(cls).get(bad.key, "")
        hint = f" ({doc})" if doc else ""
        raise ConfigError(f"{full}: {bad.value!r} is not allowed; expected {bad.allowed}{hint}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _is_path_type(tp: Any) -> bool:
    """A path, or a union or list of paths."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType, list, tuple):
        return any(_is_path_type(a) for a in typing.get_args(tp))
    return tp in (Path, Uri, PathOrTag)


def _has_override(value: Any) -> bool:
    if isinstance(value, _Raw):
        return True
    return isinstance(value, dict) and any(_has_override(v) for v in value.values())


def _leaf_path(value: Any) -> str:
    """'.a.b' for {a: {b: 1}}: the first full key under an unknown section, so the error names it."""
    if isinstance(value, dict) and value:
        first = next(iter(value))
        return f".{first}{_leaf_path(value[first])}"
    return ""


def _unknown_key_message(key: str, value: Any, prefix: str, valid: list[str], where: str) -> str:
    full = f"{prefix}{key}{_leaf_path(value)}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    section = prefix.rstrip(".") or "the top level"
    msg = f"unknown key {full!r} in {where}"
    if full != f"{prefix}{key}":
        msg += f" (there is no section {prefix + key!r})"
    if close:
        msg += f"; did you mean {prefix + close[0]!r}?"
    else:
        msg += f"; valid keys in {section}: {', '.join(valid)}"
    return msg


_TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    Path: "a path",
    Uri: "a path or URI",
    PathOrTag: "a path or a name",
}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        inner = _describe(args[0]) if args else "values"
        if origin is tuple and Ellipsis not in typing.get_args(tp):
            return f"a list of {len(args)} items ({inner})"
        return f"a list of {inner}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, base: Path, where: str) -> Any:
    text = value.text if isinstance(value, _Raw) else None
    parsed = value.parsed if isinstance(value, _Raw) else value

    def bad() -> ConfigError:
        return ConfigError(f"{key}: {parsed!r} ({type(parsed).__name__}) is the wrong type; expected {_describe(tp)}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if parsed is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, base, where)
            except ConfigError as exc:
                errors.append(exc)
        raise bad()
    if origin is Literal:
        choices = typing.get_args(tp)
        got = text.strip() if text is not None else parsed
        if got in choices:
            return got
        raise ConfigError(f"{key}: {got!r} is not allowed; expected {_describe(tp)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, parsed, prefix=f"{key}.", base=base, where=where)
    if origin in (list, tuple):
        if not isinstance(parsed, (list, tuple)):
            raise bad()
        args = typing.get_args(tp)
        if origin is tuple and args and Ellipsis not in args:
            if len(parsed) != len(args):
                raise bad()
            return tuple(_coerce(v, a, f"{key}[{i}]", base, where) for i, (v, a) in enumerate(zip(parsed, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", base, where) for i, v in enumerate(parsed)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return parsed
    if tp is bool:
        if isinstance(parsed, bool):
            return parsed
        raise bad()
    if tp is int:
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        raise bad()
    if tp is float:
        if isinstance(parsed, str):
            # YAML 1.1 reads 3e-4 (no dot) as a string; a float field takes it as the number it spells.
            try:
                parsed = float(parsed)
            except ValueError:
                raise bad() from None
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) and math.isfinite(parsed):
            return float(parsed)
        raise bad()
    if tp in (str, Path, Uri, PathOrTag):
        if text is not None:
            s = text.strip()
        elif isinstance(parsed, str):
            s = parsed
        else:
            raise bad()
        if not s:
            raise ConfigError(f"{key}: an empty value is not allowed; expected {_describe(tp)}")
        if tp is str:
            return s
        if tp is Path:
            return _resolve(s, base)
        if tp is Uri:
            return Uri(s if "://" in s else str(_resolve(s, base)))
        candidate = _resolve(s, base)
        return PathOrTag(str(candidate) if candidate.exists() else s)
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # a schema bug, not a user error


SHIPPED = "lvmae:"
"""The prefix of a path inside the installed package."""


def shipped(spec: str) -> Path:
    """The file `lvmae:FOLDER/REST` names: `REST` inside subpackage `lvmae.FOLDER` (or inside `lvmae`
    itself when `FOLDER` is no subpackage), found through `importlib.resources`, so it is the installed
    copy in a wheel install and the checkout's in an editable one."""
    relative = spec.removeprefix(SHIPPED).strip("/")
    folder, _, rest = relative.partition("/")
    try:
        root, inside = resources.files(f"lvmae.{folder}"), rest
    except ModuleNotFoundError:
        root, inside = resources.files("lvmae"), relative
    return Path(str(root.joinpath(*inside.split("/")) if inside else root))


def _resolve(s: str, base: Path) -> Path:
    if s.startswith(SHIPPED):
        return shipped(s)
    p = Path(s).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in _public_fields(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------------
# Introspection: field docs and key listing
# --------------------------------------------------------------------------------------------


def parse_python(source: str, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse`, tried again on CPython 3.11's spurious "AST constructor recursion depth mismatch"
    (a fault of the interpreter, python/cpython#106905, seen here now and then in long test runs: the
    same source parses on the next try)."""
    for attempt in range(3):
        try:
            return ast.parse(source, filename)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


@functools.cache
def _module_classes(module: str) -> dict[str, ast.ClassDef]:
    """The top-level classes of a module's source, parsed once a process."""
    source = inspect.getsource(sys.modules[module])
    return {node.name: node for node in parse_python(source, module).body if isinstance(node, ast.ClassDef)}


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a config dataclass (or of a dataclass it extends),
    by field name."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        definition = _module_classes(klass.__module__).get(klass.__name__)
        if definition is None:  # a class made at run time: no source to read
            continue
        body = definition.body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def iter_keys(cls: Any, prefix: str = ""):
    """Yield (dotted key, type description, default, doc) for every leaf key of the schema."""
    hints = _type_hints(cls)
    docs = field_docs(cls)
    defaults = cls()
    for f in _public_fields(cls):
        tp: Any = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from iter_keys(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", _describe(tp), _plain(getattr(defaults, f.name)), docs.get(f.name, "")


def to_plain(obj: Any) -> Any:
    """A config dataclass as plain YAML/JSON-able data (paths as strings)."""
    return _plain(obj)


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(_plain(obj), sort_keys=False, default_flow_style=False)


def dump_json(obj: Any) -> str:
    return json.dumps(_plain(obj), indent=2)
