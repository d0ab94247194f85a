"""Where a key sits in a TOML file, so a config error can name the line (tomllib keeps no positions).

A light line scanner, not a TOML parser: it follows ``[table]`` and ``[[array.of.tables]]`` headers and
``key = value`` lines and records the first line of each. Keys inside inline tables or multi-line values are
not recorded; a lookup then falls back to the nearest enclosing table header.

:func:`load_toml` is the one loader of every config file of the platform (settings, collector, VEE rules,
tariffs, simulators): TOML -> strict pydantic model, and :func:`config_error` turns a pydantic ValidationError
into a ConfigError naming the file, the line and the key. Its steps are public for the loaders that need more
than one file and one model: :func:`read_toml` (file -> text and tables) or :func:`parse_toml` (text), then
:func:`validate_toml`; :func:`config_error` where other sources are merged first (settings: the environment;
simulate: the command line) and :func:`key_error` for a check across keys (the collector's unit ids).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from amr.errors import ConfigError

_T = TypeVar("_T")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _split_dotted(name: str) -> list[str]:
    return [part.strip().strip("\"'") for part in name.split(".")]


def key_path(loc: tuple[object, ...] | list[object]) -> str:
    """('gateways', 0, 'meters', 2, 'unit_id') -> 'gateways[0].meters[2].unit_id'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_key_lines(text: str) -> dict[str, int]:
    """Map every key path and table header found in `text` to its 1-based line number."""
    lines: dict[str, int] = {}
    array_counts: dict[str, int] = {}
    current: list[object] = []
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        if not line or line.startswith("#"):
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = _split_dotted(header.group(2))
            # Resolve parent arrays of tables to their latest element: [[gateways.meters]] belongs to the last
            # [[gateways]] seen.
            resolved: list[object] = []
            for name in names[:-1]:
                resolved.append(name)
                parent = key_path(resolved)
                if parent in array_counts:
                    resolved.append(array_counts[parent] - 1)
            resolved.append(names[-1])
            if header.group(1) == "[[":
                base = key_path(resolved)
                index = array_counts.get(base, 0)
                array_counts[base] = index + 1
                resolved.append(index)
            current = resolved
            lines.setdefault(key_path(current), number)
            continue
        key = _KEY.match(line)
        if key:
            path = key_path([*current, *_split_dotted(key.group(1))])
            lines.setdefault(path, number)
            rest = line[key.end() :].strip()
            for quote in ('"""', "'''"):
                if rest.startswith(quote) and rest.count(quote) == 1:
                    in_multiline = quote
    return lines


def _nearest(entries: dict[str, _T], path: str) -> _T | None:
    """The entry of `path`, or of its nearest ancestor that has one ('a[0].b' -> 'a[0]' -> 'a')."""
    probe = path
    while probe:
        if probe in entries:
            return entries[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            break
        probe = probe[:cut]
    return entries.get(probe)


def line_of(lines: dict[str, int], path: str) -> int | None:
    """Line of `path`, or of its nearest recorded ancestor ('a[0].b' -> 'a[0]' -> 'a')."""
    return _nearest(lines, path)


# How TOML spells the Python types tomllib produces, for "got a string '15020'" in a type error.
_TOML_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    dict: "a table",
    list: "an array",
}
_MAX_SHOWN_INPUT_CHARS = 60  # a wrong value is echoed, but not a whole table of them


def _shown(value: object) -> str:
    kind = _TOML_TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = repr(value)
    if len(text) > _MAX_SHOWN_INPUT_CHARS:
        text = text[: _MAX_SHOWN_INPUT_CHARS - 3] + "..."
    return f"{kind} {text}"


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """(key path, message) of the first error of a pydantic validation, worded for a config file's reader.

    Type errors say what was found (strict models refuse ``port = "15020"``: the reader should see that the
    value is a string, not guess why "15020" is not an integer)."""
    first = exc.errors()[0]
    loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    message = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind.endswith("_type") or kind in ("finite_number", "literal_error", "enum"):
        message = f"{message}, got {_shown(first.get('input'))}"
    return key_path(loc), message


def config_error(
    exc: ValidationError,
    *,
    source: str,
    text: str | None = None,
    prefix: str = "",
    sources: dict[str, str] | None = None,
) -> ConfigError:
    """A ConfigError for the first problem of `exc`: `source` (or the entry of `sources` for that key or one of
    its ancestors, e.g. an environment variable or the command line) with the key's line in `text` (the file's
    TOML) when it can be found.

    `prefix`: where the validated model sits in the file ('simulate' for the [simulate] table)."""
    path, message = first_problem(exc)
    full = f"{prefix}.{path}" if prefix and path else (prefix or path)
    other = _nearest(sources, path) if sources and path else None
    if other is not None:
        return ConfigError(message, source=other, key=full or None)
    return key_error(message, source=source, text=text, key=full or None)


def key_error(message: str, *, source: str, text: str | None, key: str | None) -> ConfigError:
    """A ConfigError for `key` (a path such as 'gateways[0].meters[1].unit_id') of the TOML `text` read from
    `source`, naming the key's line (or its nearest table's): for the checks a model cannot make one field at a
    time (a unit id used twice, a missing register map)."""
    line = line_of(parse_key_lines(text), key) if text is not None and key else None
    return ConfigError(message, source=f"{source}:{line}" if line else source, key=key)


_M = TypeVar("_M", bound=BaseModel)


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """The text and the parsed tables of a TOML file; ConfigError naming the file (and line) when it cannot be
    read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", source=str(path)) from exc
    return text, parse_toml(text, source=str(path))


def parse_toml(text: str, *, source: str) -> dict[str, Any]:
    """The parsed tables of TOML `text` read from `source` (a file name, or a label for generated text); a syntax
    error is a ConfigError naming `source` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _syntax_error_line(exc, text)
        raise ConfigError(f"not valid TOML: {exc}", source=f"{source}:{line}" if line else source) from exc


# tomllib (Python < 3.14) keeps the position only in its message: "Invalid value (at line 3, column 8)".
_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


def _syntax_error_line(exc: tomllib.TOMLDecodeError, text: str) -> int | None:
    """The 1-based line of a TOML syntax error (the last line when the document ends early)."""
    line = getattr(exc, "lineno", None)  # Python 3.14 and later
    if isinstance(line, int):
        return line
    found = _POSITION.search(str(exc))
    if found:
        return int(found.group(1))
    if "at end of document" in str(exc):
        return max(1, len(text.splitlines()))
    return None


def validate_toml(
    model: type[_M],
    document: dict[str, Any],
    *,
    source: str,
    text: str,
    section: str | None = None,
    context: dict[str, Any] | None = None,
) -> _M:
    """`document` (parsed from `text`, read from `source`), or its `[section]` table, validated by the (strict)
    pydantic `model`; a ConfigError naming source, line and key on the first problem."""
    data: Any = document
    if section is not None:
        for part in section.split("."):
            if not isinstance(data, dict) or part not in data:
                raise ConfigError(f"no [{section}] table", source=source)
            data = data[part]
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise config_error(exc, source=source, text=text, prefix=section or "") from exc


def loads_toml(
    text: str, model: type[_M], *, source: str, section: str | None = None, context: dict[str, Any] | None = None
) -> _M:
    """:func:`load_toml` for TOML text already in memory (generated, or a test's), labelled `source`."""
    return validate_toml(
        model, parse_toml(text, source=source), source=source, text=text, section=section, context=context
    )


def load_toml(path: Path, model: type[_M], *, section: str | None = None, context: dict[str, Any] | None = None) -> _M:
    """THE loader of every config file of the platform: read `path`, take its `[section]` table (or the whole
    document), validate it with the (strict) pydantic `model` and return the model; every failure is a ConfigError
    naming file, line and key."""
    text, document = read_toml(path)
    return validate_toml(model, document, source=str(path), text=text, section=section, context=context)
