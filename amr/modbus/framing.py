"""Modbus application frames (pure): the MBAP header for Modbus TCP, address + CRC-16 for RTU, and the checks
that catch unit-id, function-code and transaction-id mix-ups on a shared bus.

Both sides live here, as pymodbus' framer sits under its client and its server: the client side (requests, reply
checks) for the collector, the server side (request boundaries on a serial line, replies, exception responses)
for the simulators. Only the read functions the collector needs are framed: 0x03 (holding) and 0x04 (input
registers); the server side also knows the lengths of the write functions, to skip them on a shared line.
"""

from __future__ import annotations

import struct

from amr.errors import ProtocolError

READ_HOLDING = 0x03
READ_INPUT = 0x04
MAX_READ_REGISTERS = 125  # Modbus application protocol v1.1b3, 6.3: the PDU holds at most 125 registers

MBAP_HEADER_BYTES = 7  # transaction id, protocol id, length, unit id
RTU_EXCEPTION_BYTES = 5  # unit, function | 0x80, exception code, CRC

# Exception codes a server answers with (Modbus application protocol v1.1b3, 7).
EXC_ILLEGAL_FUNCTION = 1
EXC_ILLEGAL_ADDRESS = 2
EXC_ILLEGAL_VALUE = 3
EXC_DEVICE_FAILURE = 4
EXC_GATEWAY_TARGET_FAILED = 0x0B

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusException(ProtocolError):
    """The device answered with a Modbus exception response (it is alive, the request was refused)."""

    def __init__(self, unit_id: int, function: int, code: int) -> None:
        self.unit_id = unit_id
        self.function = function
        self.code = code
        super().__init__(
            f"unit {unit_id}: exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) to function {function:#04x}"
        )


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def read_pdu(function: int, address: int, count: int) -> bytes:
    if function not in (READ_HOLDING, READ_INPUT):
        raise ValueError(f"function {function:#04x} is not a register read")
    if not 1 <= count <= MAX_READ_REGISTERS:
        raise ValueError(f"register count {count} outside 1..{MAX_READ_REGISTERS}")
    if not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise ValueError(f"register address {address} (+{count}) outside 0..65535")
    return struct.pack(">BHH", function, address, count)


def tcp_request(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu


def rtu_request(unit_id: int, pdu: bytes) -> bytes:
    body = bytes((unit_id,)) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_response_length(function_byte: int, byte_count: int) -> int:
    """Frame length of an RTU read response from its second byte (function) and third (byte count)."""
    if function_byte & 0x80:
        return RTU_EXCEPTION_BYTES
    return 3 + byte_count + 2


def parse_read_pdu(pdu: bytes | memoryview, *, unit_id: int, function: int, count: int) -> bytes:
    """The register bytes (big-endian words) of a read response PDU, after checking it answers our request."""
    if len(pdu) < 2:
        raise ProtocolError(f"unit {unit_id}: response PDU of {len(pdu)} bytes is too short")
    fc = pdu[0]
    if fc == function | 0x80:
        raise ModbusException(unit_id, function, pdu[1])
    if fc != function:
        raise ProtocolError(f"unit {unit_id}: response has function {fc:#04x}, request had {function:#04x}")
    byte_count = pdu[1]
    if byte_count != 2 * count or len(pdu) != 2 + byte_count:
        raise ProtocolError(
            f"unit {unit_id}: response carries {byte_count} bytes ({len(pdu) - 2} present), expected {2 * count}"
        )
    return bytes(pdu[2:])


def check_rtu_frame(frame: bytes | bytearray, *, unit_id: int) -> memoryview:
    """Verify CRC and unit id of a complete RTU frame; return its PDU."""
    view = memoryview(frame)
    if len(frame) < 4:
        raise ProtocolError(f"unit {unit_id}: RTU frame of {len(frame)} bytes is too short")
    received = frame[-2] | (frame[-1] << 8)
    if crc16(view[:-2]) != received:
        raise ProtocolError(f"unit {unit_id}: RTU frame CRC mismatch")
    if frame[0] != unit_id:
        raise ProtocolError(f"response from unit {frame[0]} to a request for unit {unit_id}")
    return view[1:-2]


def check_mbap(header: bytes | bytearray | memoryview, *, transaction_id: int, unit_id: int) -> int:
    """Check an MBAP header against the request; return the PDU length that follows it."""
    tid, proto, length, unit = struct.unpack(">HHHB", header)
    if proto != 0:
        raise ProtocolError(f"unit {unit_id}: MBAP protocol id {proto}, expected 0")
    if tid != transaction_id:
        raise ProtocolError(f"unit {unit_id}: transaction id {tid}, expected {transaction_id}")
    if unit != unit_id:
        raise ProtocolError(f"response from unit {unit} to a request for unit {unit_id}")
    if not 2 <= length <= 254:
        raise ProtocolError(f"unit {unit_id}: MBAP length {length} is not a valid PDU length")
    return length - 1


def words_from_bytes(data: bytes) -> list[int]:
    return list(struct.unpack(f">{len(data) // 2}H", data))


# -- server side (the simulators) ---------------------------------------------------------------------------------


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
