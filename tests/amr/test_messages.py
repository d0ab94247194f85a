from __future__ import annotations

import msgspec
import pytest

from amr.messages import DcuUplink, ReadingBatch, encode, short_obis_to_full


def test_reading_batch_round_trips() -> None:
    raw = (b'{"v":1,"source":"c1","seq":3,"readings":[{"meter":"M1","obis":"1.0.1.8.0.255",'
           b'"ts":"2026-10-01T00:30:00Z","value":12.5,"unit":"kWh"}]}')
    batch = msgspec.json.decode(raw, type=ReadingBatch)
    assert batch.readings[0].ts.utcoffset() is not None and batch.readings[0].quality == 0
    assert msgspec.json.decode(encode(batch), type=ReadingBatch) == batch


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"dcu":"d","seq":1,"sent":"2026-10-01T00:00:00Z","reads":[],"x":1}', type=DcuUplink)


def test_short_obis() -> None:
    assert short_obis_to_full("1.8.0") == "1.0.1.8.0.255"
