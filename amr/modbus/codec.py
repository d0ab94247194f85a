"""Encode values to Modbus register words and decode words to values, per a register map; plan block reads.

Pure functions. On the wire registers are big-endian 16-bit words; a multi-word value is split into words
high-first ("big" word order) or low-first ("little"). ``value = raw * scale``, so ``raw = value / scale``.

- Collectors: ``plan_reads(regmap)`` -> requests; each reply's words -> ``decode_block(request, words)``.
- Simulators: ``encode_image(regmap, function, values)`` -> the register image as wire bytes; a reply for
  ``address, count`` is the slice ``image[2*address : 2*(address+count)]``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from amr.errors import ProtocolError
from amr.modbus.registermap import MODBUS_MAX_READ, Function, RegisterMap, RegisterSpec

STRUCT_FORMAT: dict[str, str] = {
    "uint16": ">H",
    "int16": ">h",
    "uint32": ">I",
    "int32": ">i",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}
_INT_RANGE: dict[str, tuple[int, int]] = {
    "uint16": (0, 0xFFFF),
    "int16": (-0x8000, 0x7FFF),
    "uint32": (0, 0xFFFFFFFF),
    "int32": (-0x80000000, 0x7FFFFFFF),
    "uint64": (0, 0xFFFFFFFFFFFFFFFF),
}


def _swap_words(b: bytes) -> bytes:
    return b"".join(b[i : i + 2] for i in range(len(b) - 2, -1, -2))


def encode_bytes(spec: RegisterSpec, value: float) -> bytes:
    """The wire bytes (2 per register) of one value; integer types round and saturate at their range."""
    raw = value / spec.scale
    rng = _INT_RANGE.get(spec.dtype)
    if rng is not None:
        raw_i = 0 if math.isnan(raw) else round(raw) if math.isfinite(raw) else (rng[1] if raw > 0 else rng[0])
        b = struct.pack(STRUCT_FORMAT[spec.dtype], min(max(raw_i, rng[0]), rng[1]))
    else:
        b = struct.pack(STRUCT_FORMAT[spec.dtype], raw)
    return _swap_words(b) if spec.word_order == "little" else b


def encode_value(spec: RegisterSpec, value: float) -> list[int]:
    """Register words (0..65535) of one value."""
    b = encode_bytes(spec, value)
    return list(struct.unpack(f">{len(b) // 2}H", b))


def decode_value(spec: RegisterSpec, words: Sequence[int]) -> float:
    """The value [spec.unit] held by ``words`` (exactly ``spec.words`` of them)."""
    if len(words) != spec.words:
        raise ProtocolError(f"register {spec.name!r} needs {spec.words} words, got {len(words)}")
    b = struct.pack(f">{len(words)}H", *words)
    if spec.word_order == "little":
        b = _swap_words(b)
    return float(struct.unpack(STRUCT_FORMAT[spec.dtype], b)[0]) * spec.scale


def image_size(regmap: RegisterMap, function: Function) -> int:
    """Registers in the image of one function (0 .. the highest register end)."""
    return max((r.end for r in regmap.registers if r.function == function), default=0)


class ImageEncoder:
    """Encodes a meter's values into per-function register images; compiled once per map into one struct
    format per function (pad bytes for gaps), so a whole image is a single ``pack`` call."""

    def __init__(self, regmap: RegisterMap) -> None:
        self.regmap = regmap
        self.sizes = {f: image_size(regmap, f) for f in regmap.functions}
        self._plans: dict[
            str, tuple[struct.Struct, list[tuple[str, float, tuple[int, int] | None]], list[RegisterSpec]]
        ] = {}
        for f in regmap.functions:
            fmt = ">"
            at = 0
            fields: list[tuple[str, float, tuple[int, int] | None]] = []
            for r in regmap.for_function(f):
                fmt += "x" * (2 * (r.address - at)) + STRUCT_FORMAT[r.dtype][1]
                at = r.end
                fields.append((r.obis, r.scale, _INT_RANGE.get(r.dtype)))
            swapped = [r for r in regmap.for_function(f) if r.word_order == "little" and r.words > 1]
            self._plans[f] = (struct.Struct(fmt), fields, swapped)

    def encode(self, function: Function, values: Mapping[str, float]) -> bytes:
        """Wire bytes of the whole image; registers without a value (or gaps) are 0."""
        plan = self._plans.get(function)
        if plan is None:
            return b""
        packer, fields, swapped = plan
        raw: list[float | int] = []
        for obis, scale, rng in fields:
            v = values.get(obis, 0.0) / scale
            if rng is not None:
                if v != v:  # NaN
                    raw.append(0)
                    continue
                lo, hi = rng
                raw.append(lo if v <= lo else hi if v >= hi else round(v))
            else:
                raw.append(v)
        image = packer.pack(*raw)
        if not swapped:
            return image
        buf = bytearray(image)
        for spec in swapped:
            a, b = 2 * spec.address, 2 * spec.end
            buf[a:b] = _swap_words(bytes(buf[a:b]))
        return bytes(buf)


def encode_image(regmap: RegisterMap, function: Function, values: Mapping[str, float]) -> bytes:
    """Wire bytes of one function's register image for ``values`` (OBIS -> value)."""
    return ImageEncoder(regmap).encode(function, values)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReadRequest:
    """One FC 3/4 request covering ``registers`` (sorted by address)."""

    function: Function
    address: int
    count: int
    registers: tuple[RegisterSpec, ...]

    @property
    def function_code(self) -> int:
        return 3 if self.function == "holding" else 4


def plan_reads(
    registers: RegisterMap | Iterable[RegisterSpec], *, max_gap: int | None = None, max_block: int | None = None
) -> list[ReadRequest]:
    """Coalesce registers into as few requests as allowed: per function, contiguous runs (gaps of at most
    ``max_gap`` unused registers are read and thrown away) of at most ``max_block`` (<= 125) registers."""
    if isinstance(registers, RegisterMap):
        gap = registers.max_gap if max_gap is None else max_gap
        block = registers.max_block if max_block is None else max_block
        specs = list(registers.registers)
    else:
        gap = 8 if max_gap is None else max_gap
        block = MODBUS_MAX_READ if max_block is None else max_block
        specs = list(registers)
    block = min(block, MODBUS_MAX_READ)
    out: list[ReadRequest] = []
    for function in ("holding", "input"):
        run: list[RegisterSpec] = []
        for spec in sorted((s for s in specs if s.function == function), key=lambda s: s.address):
            if spec.words > block:
                raise ValueError(f"register {spec.name!r} ({spec.words} words) exceeds max_block {block}")
            if run and (
                spec.address - run[-1].end > gap or spec.end - run[0].address > block or spec.address < run[-1].end
            ):
                out.append(_request(function, run))
                run = []
            run.append(spec)
        if run:
            out.append(_request(function, run))
    return out


def _request(function: str, run: list[RegisterSpec]) -> ReadRequest:
    start = run[0].address
    end = max(s.end for s in run)
    return ReadRequest(function=function, address=start, count=end - start, registers=tuple(run))  # type: ignore[arg-type]


def decode_block(request: ReadRequest, words: Sequence[int]) -> dict[str, float]:
    """OBIS -> value for every register of ``request`` from the words of its reply."""
    if len(words) < request.count:
        raise ProtocolError(f"reply has {len(words)} registers, request {request.address:#06x} asked {request.count}")
    out: dict[str, float] = {}
    for spec in request.registers:
        i = spec.address - request.address
        out[spec.obis] = decode_value(spec, words[i : i + spec.words])
    return out


def decode_block_bytes(request: ReadRequest, data: bytes) -> dict[str, float]:
    """:func:`decode_block` from the reply's raw data bytes (2 per register, as on the wire)."""
    return decode_block(request, struct.unpack(f">{len(data) // 2}H", data))
