"""Modbus register maps: a TOML file format shared by collectors (decode) and simulators (encode).

Format (one file per meter model)::

    [map]
    name = "eastron_sdm630"          # required, identifier
    model = "Eastron SDM630"         # required, free text
    description = "..."              # optional
    max_gap = 8                      # optional: registers a block read may skip between wanted registers
    max_block = 125                  # optional: registers per request (Modbus allows at most 125)

    [[register]]
    name = "voltage_l1"              # unique in the map
    obis = "1.0.32.7.0.255"          # FULL code from the channel catalogue (amr/obis.py)
    function = "input"               # input (FC 4) | holding (FC 3)
    address = 0x0000                 # 0-based protocol address
    type = "float32"                 # uint16 int16 uint32 int32 float32 float64 uint64
    word_order = "big"               # big (high word first) | little; bytes within a word are always big-endian
    scale = 1.0                      # value [unit] = raw * scale
    unit = "V"                       # must equal the catalogue unit of the OBIS code

Loading refuses a wrong map with :class:`amr.errors.ConfigError` naming the file and the line of the entry.
Pure: the only I/O is reading the file (``read_register_map``); ``parse_register_map`` works on text.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from amr.errors import ConfigError
from amr.obis import BY_OBIS

Function = Literal["input", "holding"]
WordOrder = Literal["big", "little"]

WORDS_PER_TYPE: dict[str, int] = {
    "uint16": 1,
    "int16": 1,
    "uint32": 2,
    "int32": 2,
    "float32": 2,
    "uint64": 4,
    "float64": 4,
}
FUNCTION_CODE: dict[str, int] = {"holding": 3, "input": 4}
MAX_ADDRESS = 0xFFFF
MODBUS_MAX_READ = 125  # registers per FC 3/4 request (Modbus application protocol v1.1b3)
DEFAULT_MAX_GAP = 8  # skipping a few unused registers is cheaper than another request round trip

MAPS_DIR = Path(__file__).parent / "maps"

_MAP_KEYS = {"name", "model", "description", "max_gap", "max_block"}
_REGISTER_KEYS = {"name", "obis", "function", "address", "type", "word_order", "scale", "unit"}
_REQUIRED = ("name", "obis", "function", "address", "type", "unit")


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisterSpec:
    """One register (or run of registers holding one value) of a map."""

    name: str
    obis: str
    function: Function
    address: int
    dtype: str
    word_order: WordOrder
    scale: float
    unit: str
    line: int = 0  # line of its [[register]] header in the source file (for messages)

    @property
    def words(self) -> int:
        return WORDS_PER_TYPE[self.dtype]

    @property
    def end(self) -> int:
        """One past the last register address this value occupies."""
        return self.address + self.words

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.function]


@dataclass(frozen=True, kw_only=True)
class RegisterMap:
    """A validated register map."""

    name: str
    model: str
    description: str
    registers: tuple[RegisterSpec, ...]
    max_gap: int = DEFAULT_MAX_GAP
    max_block: int = MODBUS_MAX_READ
    source: str = "<string>"

    @cached_property
    def by_obis(self) -> dict[str, RegisterSpec]:
        return {r.obis: r for r in self.registers}

    def for_function(self, function: Function) -> tuple[RegisterSpec, ...]:
        return tuple(sorted((r for r in self.registers if r.function == function), key=lambda r: r.address))

    @property
    def functions(self) -> tuple[Function, ...]:
        present = {r.function for r in self.registers}
        return tuple(f for f in ("holding", "input") if f in present)


def _header_lines(text: str) -> list[int]:
    """1-based line numbers of each ``[[register]]`` header, in order."""
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"^\s*\[\[\s*register\s*\]\]", line)]


def _key_line(text: str, start_line: int, key: str) -> int:
    """Line of ``key = ...`` inside the entry that starts at ``start_line`` (the header line if not found)."""
    lines = text.splitlines()
    for i in range(start_line, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            break
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start_line


def parse_register_map(text: str, source: str = "<string>") -> RegisterMap:
    """Validate a register map given as TOML text; ``source`` names the file in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from exc
    unknown_top = set(doc) - {"map", "register"}
    if unknown_top:
        raise ConfigError(f"unknown table(s) {sorted(unknown_top)}; expected [map] and [[register]]", source=source)
    head = doc.get("map")
    if not isinstance(head, dict):
        raise ConfigError("missing [map] table with name and model", source=source)
    extra = set(head) - _MAP_KEYS
    if extra:
        raise ConfigError(f"unknown key(s) {sorted(extra)} in [map]", source=source, key=sorted(extra)[0])
    for key in ("name", "model"):
        if not isinstance(head.get(key), str) or not head[key].strip():
            raise ConfigError(f"[map] needs a non-empty string {key!r}", source=source, key=key)
    max_gap = head.get("max_gap", DEFAULT_MAX_GAP)
    max_block = head.get("max_block", MODBUS_MAX_READ)
    if not isinstance(max_gap, int) or max_gap < 0:
        raise ConfigError(f"[map] max_gap must be an integer >= 0, got {max_gap!r}", source=source, key="max_gap")
    if not isinstance(max_block, int) or not 1 <= max_block <= MODBUS_MAX_READ:
        raise ConfigError(
            f"[map] max_block must be 1..{MODBUS_MAX_READ}, got {max_block!r}", source=source, key="max_block"
        )
    entries = doc.get("register", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError("a map needs at least one [[register]] entry", source=source)
    header_lines = _header_lines(text)
    specs: list[RegisterSpec] = []
    for index, entry in enumerate(entries):
        line = header_lines[index] if index < len(header_lines) else 0
        specs.append(_parse_register(entry, index, line, text, source))
    _check_unique(specs, source)
    _check_overlaps(specs, source)
    return RegisterMap(
        name=head["name"],
        model=head["model"],
        description=str(head.get("description", "")),
        registers=tuple(specs),
        max_gap=max_gap,
        max_block=max_block,
        source=source,
    )


def _where(source: str, index: int, line: int, name: object, key_line: int | None = None) -> str:
    label = f"register #{index + 1}" + (f" {name!r}" if isinstance(name, str) else "")
    return f"{source}:{key_line or line}" + f" ({label})"


def _parse_register(entry: dict, index: int, line: int, text: str, source: str) -> RegisterSpec:
    name = entry.get("name")

    def fail(message: str, key: str | None = None) -> ConfigError:
        kl = _key_line(text, line, key) if key and line else line
        return ConfigError(message, source=_where(source, index, line, name, kl), key=key)

    extra = set(entry) - _REGISTER_KEYS
    if extra:
        raise fail(f"unknown key(s) {sorted(extra)}; allowed: {sorted(_REGISTER_KEYS)}", sorted(extra)[0])
    for key in _REQUIRED:
        if key not in entry:
            raise fail(f"missing required key {key!r}", key)
    if not isinstance(name, str) or not name:
        raise fail("name must be a non-empty string", "name")
    obis = entry["obis"]
    if not isinstance(obis, str) or obis not in BY_OBIS:
        hint = " (write the full code, e.g. '1.0.1.8.0.255')" if isinstance(obis, str) and obis.count(".") != 5 else ""
        raise fail(f"unknown OBIS code {obis!r}: not in the channel catalogue{hint}", "obis")
    function = entry["function"]
    if function not in FUNCTION_CODE:
        raise fail(f"function must be 'input' or 'holding', got {function!r}", "function")
    dtype = entry["type"]
    if dtype not in WORDS_PER_TYPE:
        raise fail(f"type must be one of {sorted(WORDS_PER_TYPE)}, got {dtype!r}", "type")
    address = entry["address"]
    if not isinstance(address, int) or isinstance(address, bool) or address < 0:
        raise fail(f"address must be an integer >= 0, got {address!r}", "address")
    if address + WORDS_PER_TYPE[dtype] - 1 > MAX_ADDRESS:
        raise fail(
            f"address {address:#06x} + {WORDS_PER_TYPE[dtype]} words of {dtype} runs past {MAX_ADDRESS:#06x}",
            "address",
        )
    word_order = entry.get("word_order", "big")
    if word_order not in ("big", "little"):
        raise fail(f"word_order must be 'big' or 'little', got {word_order!r}", "word_order")
    if word_order == "little" and WORDS_PER_TYPE[dtype] == 1:
        word_order = "big"  # meaningless for one word
    scale = entry.get("scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or scale == 0:
        raise fail(f"scale must be a non-zero number, got {scale!r}", "scale")
    unit = entry["unit"]
    want = BY_OBIS[obis].unit
    if unit != want:
        raise fail(
            f"unit {unit!r} does not match the catalogue unit {want!r} of {obis} (scale converts raw -> {want})", "unit"
        )
    return RegisterSpec(
        name=name,
        obis=obis,
        function=function,
        address=address,
        dtype=dtype,
        word_order=word_order,
        scale=float(scale),
        unit=unit,
        line=line,
    )


def _check_unique(specs: list[RegisterSpec], source: str) -> None:
    seen_name: dict[str, RegisterSpec] = {}
    seen_obis: dict[str, RegisterSpec] = {}
    for i, s in enumerate(specs):
        if s.name in seen_name:
            raise ConfigError(
                f"duplicate register name (first at line {seen_name[s.name].line})",
                source=_where(source, i, s.line, s.name),
                key="name",
            )
        if s.obis in seen_obis:
            raise ConfigError(
                f"OBIS {s.obis} is already mapped by {seen_obis[s.obis].name!r} (line {seen_obis[s.obis].line})",
                source=_where(source, i, s.line, s.name),
                key="obis",
            )
        seen_name[s.name] = s
        seen_obis[s.obis] = s


def _check_overlaps(specs: list[RegisterSpec], source: str) -> None:
    for function in FUNCTION_CODE:
        ordered = sorted((s for s in specs if s.function == function), key=lambda s: (s.address, s.line))
        for a, b in itertools.pairwise(ordered):
            if b.address < a.end:
                later = b if b.line >= a.line else a
                other = a if later is b else b
                raise ConfigError(
                    f"{function} registers {b.address:#06x}.. overlap {other.name!r} "
                    f"({a.address:#06x}..{a.end - 1:#06x}, line {other.line})",
                    source=_where(source, specs.index(later), later.line, later.name),
                    key="address",
                )


def read_register_map(path: str | Path) -> RegisterMap:
    """Read and validate a register map file (a bare name like 'eastron_sdm630' means a shipped map)."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = MAPS_DIR / f"{p.name}.toml"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read register map: {exc.strerror}", source=str(p)) from exc
    return parse_register_map(text, source=str(p))


def shipped_maps() -> list[str]:
    """Names of the maps shipped in amr/modbus/maps/."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.toml"))
