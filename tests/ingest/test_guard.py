"""The pre-parse limits (ingest.guard) and the reasons parse_message gives: pure functions, checked against a
plain-Python twin and on the payloads that used to kill the worker."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amr.errors import PayloadError
from amr.messages import ColumnarReadingBatch, encode
from ingest.decode import parse_message
from ingest.guard import check_payload, is_clean_identifier, nesting_depth
from ingest.limits import MAX_NESTING_DEPTH

TOPIC = "amr/v1/readings/c1"


def twin_depth(text: str) -> int:
    """Plain-Python twin of nesting_depth: a character scanner with a string state."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:', max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner),
    max_leaves=30,
)


@settings(max_examples=300, derandomize=True)
@given(json_values)
def test_nesting_depth_matches_the_twin(value: object) -> None:
    text = json.dumps(value)
    assert nesting_depth(text.encode()) == twin_depth(text)


def nested(levels: int, inner: str = "1") -> bytes:
    return ('{"a":' * levels + inner + "}" * levels).encode()


def test_deep_nesting_refused_before_decoding() -> None:
    with pytest.raises(PayloadError, match="nested 5000 levels deep"):
        check_payload(nested(5000))
    check_payload(nested(MAX_NESTING_DEPTH))  # at the limit: accepted


def test_brackets_inside_strings_do_not_count() -> None:
    payload = json.dumps({"s": "[" * 500, "t": '{"a": ' * 100}).encode()
    assert nesting_depth(payload) == 1
    check_payload(payload)


@pytest.mark.parametrize(
    ("payload", "shown"),
    [
        (b'{"source": "a\\u0000b"}', "\\u0000"),
        (b'{"source": "a\\u001fb"}', "\\u001f"),
        (b'{"source": "a\\u007Fb"}', "\\u007F"),
        (b'{"source": "a\x00b"}', "NUL byte"),
    ],
)
def test_nul_and_control_escapes_refused(payload: bytes, shown: str) -> None:
    with pytest.raises(PayloadError, match="NUL or control character") as info:
        check_payload(payload)
    assert shown in info.value.reason


def test_line_breaks_allowed_in_free_text_but_not_in_identifiers() -> None:
    check_payload(b'{"detail": {"note": "line 1\\nline 2"}}')
    assert is_clean_identifier("VN24HN000123")
    assert not is_clean_identifier("VN24\nHN")
    assert not is_clean_identifier("")
    assert not is_clean_identifier("x" * 1000)


def _reason(topic: str, payload: bytes) -> str:
    with pytest.raises(PayloadError) as info:
        parse_message(topic, payload)
    return info.value.reason


def _v2() -> bytes:
    return encode(
        ColumnarReadingBatch(
            source="c1", seq=1, meters=["M1"], obis=["1.0.1.8.0.255"], units=["kWh"], m=[0], o=[0],
            t=[1_767_225_600], x=[1.5],
        )
    )  # fmt: skip


def test_poison_payloads_of_the_issue_become_reasons() -> None:
    """Each of these raised an uncaught error or got the wrong reason before."""
    assert "nested" in _reason(TOPIC, nested(2500))
    events = b'{"v":1,"source":"c1","seq":1,"events":[{"meter":"M1","ts":"2026-01-01T00:00:00Z","event":"x",'
    events += b'"detail":' + nested(3000) + b"}]}"
    assert "nested" in _reason("amr/v1/events/c1", events)
    uplink = b'{"v":1,"dcu":"d1","seq":1,"sent":"2026-01-01T00:00:00Z","reads":[],"events":[{"serial":"M1",'
    uplink += b'"ts":"2026-01-01T00:00:00Z","event":"x","detail":' + nested(3000) + b"}]}"
    assert "nested" in _reason("amr/v1/dcu/d1/uplink", uplink)
    nul_serial = _v2().replace(b'"M1"', b'"M\\u00001"')
    assert "NUL" in _reason(TOPIC, nul_serial)


def test_truncated_v2_gets_the_json_error_not_the_v1_decoders() -> None:
    payload = _v2()
    reason = _reason(TOPIC, payload[: len(payload) // 2])
    assert "malformed JSON" in reason and "truncated" in reason
    assert "unknown field" not in reason


def test_nan_in_v2_is_malformed_json() -> None:
    reason = _reason(TOPIC, _v2().replace(b"[1.5]", b"[NaN]"))
    assert "malformed JSON" in reason and "unknown field" not in reason


def test_v2_of_the_wrong_shape_gets_the_v2_decoders_error() -> None:
    payload = json.loads(_v2())
    payload["m"] = ["zero"]
    reason = _reason(TOPIC, json.dumps(payload).encode())
    assert "(v2)" in reason and "$.m[0]" in reason


def test_unknown_version_and_non_object() -> None:
    assert "unsupported format version v=7" in _reason(TOPIC, b'{"v": 7, "source": "c1"}')
    assert "not an object" in _reason(TOPIC, b"[1, 2, 3]")
    assert "not an integer" in _reason(TOPIC, b'{"v": "2", "source": "c1"}')


def test_a_message_naming_another_client_is_refused() -> None:
    assert "not the topic's client 'c2'" in _reason("amr/v1/readings/c2", _v2())
    status = b'{"v":1,"source":"victim","kind":"collector","state":"online","ts":"2026-01-01T00:00:00Z"}'
    assert "not the topic's client" in _reason("amr/v1/status/attacker", status)
    uplink = b'{"v":1,"dcu":"other","seq":1,"sent":"2026-01-01T00:00:00Z","reads":[]}'
    assert "dcu 'other'" in _reason("amr/v1/dcu/d1/uplink", uplink)
