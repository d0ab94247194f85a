"""The Modbus framing both the collector and the simulators use, against published frames (one implementation
now, so it is checked against the standard's bytes rather than against a second copy)."""

from __future__ import annotations

from amr.modbus.framing import crc16, crc_ok, mbap, read_pdu, read_reply_pdu, rtu_request, rtu_request_length, with_crc


def test_crc_of_published_rtu_frames() -> None:
    # Read 10 holding registers of unit 1 from 0: 01 03 00 00 00 0A C5 CD (MODBUS over serial line v1.02 example
    # frame, widely quoted; CRC low byte first).
    assert with_crc(bytes.fromhex("01030000000a")) == bytes.fromhex("01030000000ac5cd")
    assert crc16(bytes.fromhex("01030000000a")) == 0xCDC5
    # Read 1 input register of unit 17 from 8: 11 04 00 08 00 01 B2 98.
    assert with_crc(bytes.fromhex("110400080001")) == bytes.fromhex("110400080001b298")


def test_client_request_and_server_parsing_agree() -> None:
    frame = rtu_request(17, read_pdu(0x04, 8, 1))
    assert frame == bytes.fromhex("110400080001b298")
    assert crc_ok(frame) and rtu_request_length(frame) == len(frame)
    assert not crc_ok(frame[:-1] + bytes([frame[-1] ^ 1]))


def test_server_replies() -> None:
    assert read_reply_pdu(3, b"\x00\x2a") == bytes.fromhex("0302002a")
    assert mbap(7, 1, bytes.fromhex("0302002a")) == bytes.fromhex("000700000005010302002a")
