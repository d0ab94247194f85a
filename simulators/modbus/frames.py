"""Server-side Modbus framing (pure): CRC-16/MODBUS, RTU frame boundaries, MBAP headers, replies.

Written independently of the client-side framing (`amr/modbus/framing.py`) so each side tests the other.
"""

from __future__ import annotations

import struct


def _table() -> tuple[int, ...]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return tuple(out)


_CRC = _table()

EXC_ILLEGAL_FUNCTION = 1
EXC_ILLEGAL_ADDRESS = 2
EXC_ILLEGAL_VALUE = 3
EXC_DEVICE_FAILURE = 4
EXC_GATEWAY_TARGET_FAILED = 0x0B
MBAP_LEN = 7
MAX_READ = 125


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS (reflected 0xA001, init 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ b) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    """Append the CRC, low byte first as RTU sends it."""
    return frame + struct.pack("<H", crc16(frame))


def crc_ok(frame: bytes | bytearray) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack_from("<H", frame, len(frame) - 2)[0]


def rtu_request_length(buf: bytes | bytearray) -> int | None:
    """Length of the RTU request at the start of ``buf``; None if more bytes are needed, 0 if unknowable."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        if len(buf) < 7:
            return None
        return 9 + buf[6]
    return 0


def exception_pdu(function: int, code: int) -> bytes:
    return bytes((function | 0x80, code))


def read_reply_pdu(function: int, data: bytes) -> bytes:
    return bytes((function, len(data))) + data


def mbap(transaction: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu
