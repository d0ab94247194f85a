"""One Modbus meter as the bus polls it: the block requests its register map plans, and the decoding of the
answers into normalized readings (OBIS channel, catalogue unit, scale applied; multiplier not applied).

The decoder is compiled once per map into (offset, struct format, word swap, scale, OBIS, unit) tuples, so a
meter read costs one ``struct.unpack_from`` per value; ``amr.modbus.codec.decode_block_bytes`` is the
reference it is tested against.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from amr.errors import ProtocolError
from amr.messages import Reading
from amr.modbus.codec import STRUCT_FORMAT, ReadRequest, plan_reads
from amr.modbus.registermap import RegisterMap, read_register_map
from collectors.modbus.bus import Block

STATUS_OBIS = "0.0.96.10.1.255"  # AMR profile status: its bits qualify the other values of the same read


@dataclass(frozen=True, slots=True)
class _Field:
    offset: int  # bytes into the block's answer
    fmt: str
    nbytes: int
    little: bool  # low word first: swap words before unpacking
    scale: float
    obis: str
    unit: str


def _swap_words(b: bytes) -> bytes:
    return b"".join(b[i : i + 2] for i in range(len(b) - 2, -1, -2))


@dataclass(frozen=True)
class CompiledMap:
    """A register map's request plan with a fast decoder for each request."""

    regmap: RegisterMap
    requests: tuple[ReadRequest, ...]
    blocks: tuple[Block, ...]
    fields: tuple[tuple[_Field, ...], ...]

    def decode(self, answers: Sequence[bytes]) -> list[tuple[str, float, str]]:
        """(OBIS, value, unit) for every register, from the answers to `blocks` in order."""
        if len(answers) != len(self.fields):
            raise ProtocolError(f"{len(answers)} answers for {len(self.fields)} requests")
        out: list[tuple[str, float, str]] = []
        for data, fields in zip(answers, self.fields, strict=True):
            for f in fields:
                if f.little:
                    raw = struct.unpack(f.fmt, _swap_words(data[f.offset : f.offset + f.nbytes]))[0]
                else:
                    raw = struct.unpack_from(f.fmt, data, f.offset)[0]
                out.append((f.obis, float(raw) * f.scale, f.unit))
        return out


def compile_map(regmap: RegisterMap) -> CompiledMap:
    requests = tuple(plan_reads(regmap))
    blocks = tuple(Block(function=r.function_code, address=r.address, count=r.count) for r in requests)
    fields = tuple(
        tuple(
            _Field(
                offset=2 * (spec.address - req.address),
                fmt=STRUCT_FORMAT[spec.dtype],
                nbytes=2 * spec.words,
                little=spec.word_order == "little",
                scale=spec.scale,
                obis=spec.obis,
                unit=spec.unit,
            )
            for spec in req.registers
        )
        for req in requests
    )
    return CompiledMap(regmap=regmap, requests=requests, blocks=blocks, fields=fields)


@lru_cache(maxsize=64)
def read_compiled_map(path: Path) -> CompiledMap:
    """Load (once per file) and compile a register map; ConfigError names the map file and line."""
    return compile_map(read_register_map(path))


@dataclass(kw_only=True)
class ModbusMeterReader:
    """A meter on a bus: what to request and how to turn the answers into readings."""

    serial: str
    unit_id: int
    poll_interval_s: float
    multiplier: float
    compiled: CompiledMap

    @property
    def blocks(self) -> Sequence[Block]:
        return self.compiled.blocks

    def decode(self, answers: Sequence[bytes], ts_s: float) -> list[Reading]:
        """Readings stamped `ts_s` (the poll's UTC epoch seconds); when the map has the AMR profile status
        register, its bits become every reading's quality."""
        ts = datetime.fromtimestamp(ts_s, tz=UTC)
        serial = self.serial
        values = self.compiled.decode(answers)
        quality = 0
        for obis, value, _unit in values:
            if obis == STATUS_OBIS:
                quality = int(value) & 0xFF
        return [
            Reading(meter=serial, obis=obis, ts=ts, value=value, unit=unit, quality=quality)
            for obis, value, unit in values
        ]
