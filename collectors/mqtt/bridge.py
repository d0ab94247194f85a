"""Concentrator uplinks (``amr/v1/dcu/<id>/uplink``, amr.messages.DcuUplink) -> normalized readings and events.

Short OBIS keys (``1.8.0``) become full catalogue codes (``1.0.1.8.0.255``) with the catalogue's unit; the
read's status bits become each reading's ``quality``. A value whose code is not in the catalogue is skipped
and counted (one unknown register must not cost the meter's other readings). The uplink is acknowledged to
the broker only once what it carried is committed to the spool, so a crash makes the broker deliver it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from amr.errors import PayloadError
from amr.messages import DcuUplink, MeterEvent, Reading, short_obis_to_full
from amr.obis import BY_OBIS
from collectors.batcher import Batcher
from collectors.publisher import IncomingMessage

log = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(DcuUplink)


@dataclass(frozen=True, kw_only=True)
class NormalizedUplink:
    dcu: str
    seq: int
    readings: list[Reading]
    events: list[MeterEvent]
    unknown_codes: list[str]


def parse_uplink(payload: bytes) -> DcuUplink:
    """Decode and validate one uplink; PayloadError says what is wrong."""
    try:
        uplink = _decoder.decode(payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadError(f"not a valid DCU uplink: {exc}") from exc
    if uplink.v != 1:
        raise PayloadError(f"DCU uplink format version {uplink.v} is not supported (expected 1)")
    for read in uplink.reads:
        if read.ts.tzinfo is None:
            raise PayloadError(f"read of {read.serial} has a naive timestamp")
    return uplink


def normalize_uplink(uplink: DcuUplink) -> NormalizedUplink:
    readings: list[Reading] = []
    unknown: list[str] = []
    for read in uplink.reads:
        for short, value in read.values.items():
            code = short if short.count(".") == 5 else short_obis_to_full(short)
            channel = BY_OBIS.get(code)
            if channel is None:
                unknown.append(short)
                continue
            readings.append(
                Reading(meter=read.serial, obis=code, ts=read.ts, value=value, unit=channel.unit, quality=read.status)
            )
    events = [MeterEvent(meter=e.serial, ts=e.ts, event=e.event, detail=e.detail) for e in uplink.events]
    return NormalizedUplink(dcu=uplink.dcu, seq=uplink.seq, readings=readings, events=events, unknown_codes=unknown)


class DcuBridge:
    """Feeds normalized uplinks into the batcher; acknowledges each uplink once it is durable."""

    def __init__(self, batcher: Batcher, ack: Callable[[IncomingMessage], None]) -> None:
        self.batcher = batcher
        self.ack = ack
        self.uplinks = 0
        self.invalid = 0
        self.unknown_codes = 0
        self.readings = 0
        self.last_seq: dict[str, int] = {}

    def handle(self, message: IncomingMessage) -> None:
        try:
            normalized = normalize_uplink(parse_uplink(message.payload))
        except PayloadError as exc:
            # Ingest reads DCU topics too and dead-letters what it cannot decode; the bridge has nothing to add.
            self.invalid += 1
            log.warning("dropping invalid uplink on %s: %s", message.topic, exc.reason)
            self.ack(message)
            return
        self.uplinks += 1
        self.unknown_codes += len(normalized.unknown_codes)
        self.readings += len(normalized.readings)
        self.last_seq[normalized.dcu] = normalized.seq
        if normalized.events:
            self.batcher.add_events(normalized.events)
        self.batcher.add(normalized.readings, on_durable=lambda: self.ack(message))
