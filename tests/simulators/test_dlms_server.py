"""The DLMS/COSEM simulator read over real TCP with the independent dlms-cosem client."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dlms_cosem import cosem, enumerations, exceptions, time, utils
from dlms_cosem.client import DlmsClient
from dlms_cosem.cosem.selective_access import CaptureObject, RangeDescriptor
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import LowLevelSecurityAuthentication, NoSecurityAuthentication

from amr.timebase import LOCAL_UTC_OFFSET_S
from simulators.clock import SimClock
from simulators.dlms import start_dlms_server
from simulators.dlms.server import DlmsServerHandle, wrap
from simulators.dlms.session import SERVER_MAX_PDU_SIZE
from simulators.faults import Faults
from simulators.meter import SimulatedMeter

AT = datetime(2026, 3, 10, 10, 17, 23, tzinfo=UTC)
LP = "1.0.99.1.0.255"


def attr(class_id: int, obis: str, attribute: int) -> cosem.CosemAttribute:
    return cosem.CosemAttribute(enumerations.CosemInterface(class_id), cosem.Obis.from_string(obis), attribute)


def client(port: int, sap: int, password: bytes | None = None, timeout_s: int = 10) -> DlmsClient:
    auth = LowLevelSecurityAuthentication(secret=password) if password is not None else NoSecurityAuthentication()
    io = BlockingTcpIO(host="127.0.0.1", port=port, timeout=timeout_s)
    return DlmsClient(
        transport=TcpTransport(client_logical_address=16, server_logical_address=sap, io=io), authentication=auth
    )


@pytest.fixture(scope="module")
def meters() -> list[SimulatedMeter]:
    return [
        SimulatedMeter(serial="VN26DLMS0001", seed=11, tariff_class="household", faults=Faults(drift_s_per_day=12.0)),
        SimulatedMeter(serial="VN26DLMS0002", seed=12, tariff_class="business"),
    ]


@pytest.fixture(scope="module")
def server(meters: list[SimulatedMeter]) -> Iterator[DlmsServerHandle]:
    with start_dlms_server(meters, clock=SimClock.fixed(AT), passwords={"VN26DLMS0002": b"12345678"}) as handle:
        yield handle


def test_register_value_with_scaler_unit(server: DlmsServerHandle, meters: list[SimulatedMeter]) -> None:
    assert server.addresses == {"VN26DLMS0001": 16, "VN26DLMS0002": 17}
    expected = meters[0].read_registers(AT)
    with client(server.port, 16).session() as c:
        raw_energy = utils.parse_as_dlms_data(c.get(attr(3, "1.0.1.8.0.255", 2)))
        scaler, unit = utils.parse_as_dlms_data(c.get(attr(3, "1.0.1.8.0.255", 3)))
        raw_volts = utils.parse_as_dlms_data(c.get(attr(3, "1.0.32.7.0.255", 2)))
        v_scaler, v_unit = utils.parse_as_dlms_data(c.get(attr(3, "1.0.32.7.0.255", 3)))
        serial = utils.parse_as_dlms_data(c.get(attr(1, "0.0.96.1.0.255", 2)))
    assert unit == 30 and v_unit == 35  # Wh, V
    assert v_scaler == -1
    assert raw_energy * 10**scaler / 1000 == pytest.approx(expected["1.0.1.8.0.255"], abs=0.0006)
    assert raw_volts * 10**v_scaler == pytest.approx(expected["1.0.32.7.0.255"], abs=0.06)
    assert expected["1.0.1.8.0.255"] > 0
    assert serial == "VN26DLMS0001"


def test_clock_shows_the_meter_drift(server: DlmsServerHandle, meters: list[SimulatedMeter]) -> None:
    with client(server.port, 16).session() as c:
        raw = utils.parse_as_dlms_data(c.get(attr(8, "0.0.1.0.0.255", 2)))
    shown, _status = time.datetime_from_bytes(bytes(raw))
    drift = meters[0].clock_offset_s(AT)
    assert abs(drift) > 60  # years of 12 s/day since installation
    assert (shown - AT).total_seconds() == pytest.approx(drift, abs=0.011)
    assert shown.utcoffset() == timedelta(seconds=LOCAL_UTC_OFFSET_S)  # the meter keeps local time


def test_load_profile_range_by_time(server: DlmsServerHandle, meters: list[SimulatedMeter]) -> None:
    start, end = AT - timedelta(hours=6, minutes=10), AT - timedelta(hours=3)
    descriptor = RangeDescriptor(
        restricting_object=CaptureObject(attr(8, "0.0.1.0.0.255", 2)), from_value=start, to_value=end
    )
    with client(server.port, 16).session() as c:
        columns = utils.parse_as_dlms_data(c.get(attr(7, LP, 3)))
        period = utils.parse_as_dlms_data(c.get(attr(7, LP, 4)))
        in_use = utils.parse_as_dlms_data(c.get(attr(7, LP, 7)))
        rows = utils.parse_as_dlms_data(c.get(attr(7, LP, 2), access_descriptor=descriptor))
        day = c.get(
            attr(7, LP, 2),
            access_descriptor=RangeDescriptor(
                restricting_object=CaptureObject(attr(8, "0.0.1.0.0.255", 2)),
                from_value=AT - timedelta(days=1),
                to_value=AT,
            ),
        )
    assert period == 1800 and in_use > 48
    names = [".".join(str(b) for b in col[1]) for col in columns]
    assert names[:3] == ["0.0.1.0.0.255", "0.0.96.10.1.255", "1.0.1.8.0.255"]
    expected = meters[0].load_profile(start, end, 1800)
    stamps = [time.datetime_from_bytes(bytes(row[0]))[0].astimezone(UTC) for row in rows]
    assert stamps == [ts for ts, _ in expected]
    assert len(stamps) == 6 and all(start <= ts <= end for ts in stamps)  # 04:30 .. 07:00 UTC
    for row, (_ts, values) in zip(rows, expected, strict=True):
        assert row[1] == int(values["0.0.96.10.1.255"])
        assert row[2] / 1000 == pytest.approx(values["1.0.1.8.0.255"], abs=0.0006)
    # A day of entries is larger than the meter's PDU: it came in blocks and still decodes whole.
    assert len(day) > SERVER_MAX_PDU_SIZE
    assert len(utils.parse_as_dlms_data(day)) == 48


def test_lls_password_is_checked(server: DlmsServerHandle) -> None:
    with client(server.port, 17, b"12345678").session() as c:
        serial = utils.parse_as_dlms_data(c.get(attr(1, "0.0.96.1.0.255", 2)))
    assert serial == "VN26DLMS0002"
    for password in (b"wrong", None):
        c = client(server.port, 17, password)
        c.connect()
        try:
            with pytest.raises(exceptions.DlmsClientException, match="AUTHENTICATION"):
                c.associate()
        finally:
            c.disconnect()


def test_unknown_object_and_unknown_address(server: DlmsServerHandle) -> None:
    from dlms_cosem.client import DataResultError

    with client(server.port, 16).session() as c:
        with pytest.raises(DataResultError, match="OBJECT_UNDEFINED"):
            c.get(attr(3, "1.0.99.99.0.255", 2))
        # the association survives an error answer
        assert utils.parse_as_dlms_data(c.get(attr(3, "1.0.1.8.0.255", 3))) == [0, 30]
    c = client(server.port, 99, timeout_s=1)
    c.connect()
    try:
        with pytest.raises(exceptions.CommunicationError):  # no device at SAP 99: the frame is discarded
            c.associate()
    finally:
        c.disconnect()


# --- selective access by entry (selector 2), as Gurux's readRowsByEntry sends it --------------------------------

# AARQ, logical-name referencing without ciphering, no authentication; user information: xDLMS InitiateRequest
# (DLMS version 6, proposed conformance 0x007E1F, client max receive PDU size 0x04B0).
AARQ = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0")
GET_RESPONSE_NORMAL = bytes([0xC4, 0x01])
INVOKE = 0xC1  # invoke id 1, confirmed, high priority


def get_request(class_id: int, obis: str, attribute: int, access: bytes = b"") -> bytes:
    """A GET-Request-Normal, hand-encoded: tag C0, choice 01, invoke-id-and-priority, class id, logical name,
    attribute id, access-selection flag (then the selector and its parameters)."""
    head = bytes([0xC0, 0x01, INVOKE]) + class_id.to_bytes(2, "big") + bytes(int(p) for p in obis.split("."))
    return head + bytes([attribute]) + (b"\x01" + access if access else b"\x00")


def entry_descriptor(from_entry: int, to_entry: int, from_value: int, to_value: int) -> bytes:
    """Selector 2 and its entry_descriptor: structure of 4 (double-long-unsigned x 2, long-unsigned x 2)."""
    return (
        bytes([0x02, 0x02, 0x04, 0x06])
        + from_entry.to_bytes(4, "big")
        + b"\x06"
        + to_entry.to_bytes(4, "big")
        + b"\x12"
        + from_value.to_bytes(2, "big")
        + b"\x12"
        + to_value.to_bytes(2, "big")
    )


class RawWrapperClient:
    """IEC 62056-47 wrapper frames over a plain TCP socket: what goes out is exactly the bytes given."""

    def __init__(self, port: int, server_sap: int, client_sap: int = 16) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.server_sap, self.client_sap = server_sap, client_sap

    def request(self, apdu: bytes) -> bytes:
        header = struct.pack(">HHHH", 1, self.client_sap, self.server_sap, len(apdu))
        self.sock.sendall(header + apdu)
        head = self._exactly(8)
        version, source, destination, length = struct.unpack(">HHHH", head)
        assert (version, source, destination) == (1, self.server_sap, self.client_sap)
        return self._exactly(length)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def test_load_profile_rows_by_entry(server: DlmsServerHandle, meters: list[SimulatedMeter]) -> None:
    raw = RawWrapperClient(server.port, 16)
    try:
        aare = raw.request(AARQ)
        assert aare[0] == 0x61  # AARE
        in_use_answer = raw.request(get_request(7, LP, 7))
        assert in_use_answer[:4] == GET_RESPONSE_NORMAL + bytes([INVOKE, 0x00])
        in_use = utils.parse_as_dlms_data(in_use_answer[4:])
        # The three newest entries, all six columns.
        answer = raw.request(get_request(7, LP, 2, entry_descriptor(in_use - 2, 0, 1, 0)))
        # Entries 1 and 2 (the oldest held), columns 1..3: clock, status, import energy.
        oldest = raw.request(get_request(7, LP, 2, entry_descriptor(1, 2, 1, 3)))
        # A reversed range is a data-access-result, not an exception response; the association survives.
        reversed_range = raw.request(get_request(7, LP, 2, entry_descriptor(5, 4, 1, 0)))
        past_the_end = raw.request(get_request(7, LP, 2, entry_descriptor(in_use + 1, 0, 1, 0)))
    finally:
        raw.close()
    assert answer[:4] == GET_RESPONSE_NORMAL + bytes([INVOKE, 0x00]), answer[:8].hex()
    rows = utils.parse_as_dlms_data(answer[4:])
    assert len(rows) == 3 and all(len(row) == 6 for row in rows)
    stamps = [time.datetime_from_bytes(bytes(row[0]))[0].astimezone(UTC) for row in rows]
    newest = datetime.fromtimestamp(AT.timestamp() // 1800 * 1800, UTC)  # the last completed capture
    assert stamps == [newest - timedelta(minutes=60), newest - timedelta(minutes=30), newest]
    expected = dict(meters[0].load_profile(stamps[0], stamps[-1], 1800))
    for row, ts in zip(rows, stamps, strict=True):
        assert row[2] / 1000 == pytest.approx(expected[ts]["1.0.1.8.0.255"], abs=0.0006)

    assert oldest[:4] == GET_RESPONSE_NORMAL + bytes([INVOKE, 0x00])
    old_rows = utils.parse_as_dlms_data(oldest[4:])
    assert len(old_rows) == 2 and all(len(row) == 3 for row in old_rows)
    old_stamps = [time.datetime_from_bytes(bytes(row[0]))[0].astimezone(UTC) for row in old_rows]
    assert old_stamps[0] == newest - timedelta(minutes=30) * (in_use - 1)
    assert old_stamps[1] - old_stamps[0] == timedelta(minutes=30)

    # GetResponseNormal with the data-access-result choice (1): scope-of-access-violated (13).
    violated = enumerations.DataAccessResult.SCOPE_OF_ACCESS_VIOLATED
    assert violated == 13 and reversed_range == GET_RESPONSE_NORMAL + bytes([INVOKE, 0x01, violated])
    assert past_the_end == GET_RESPONSE_NORMAL + bytes([INVOKE, 0x00, 0x01, 0x00])  # an empty array


def _answered(port: int, frames: list[tuple[int, bytes]], wait_s: float = 0.2) -> list[bool]:
    """Send each (server SAP, APDU) in turn on one connection; whether each got an answer within `wait_s`."""
    got = []
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        for sap, apdu in frames:
            s.sendall(wrap(apdu, source=16, destination=sap))
            try:
                header = _recv_exactly(s, 8)
                _recv_exactly(s, int.from_bytes(header[6:8], "big"))
                got.append(True)
            except TimeoutError:
                got.append(False)
    return got


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_no_answer_decisions_depend_on_the_instant_and_request_not_on_other_traffic() -> None:
    # A shared generator's n-th draw decided which request went unanswered: another meter's requests, an earlier
    # instant's polls or a retry shifted every later decision, so `amr demo` lost different reads in each run.
    flaky = [
        SimulatedMeter(serial="VN26DLMF0001", seed=31, faults=Faults(no_answer=0.5)),
        SimulatedMeter(serial="VN26DLMF0002", seed=32, faults=Faults(no_answer=0.5)),
    ]
    requests = [(16, bytes([0xC0, 0x01, 0xC1, i])) for i in range(10)] + [(16, bytes([0xC0, 0x01, 0xC1, 0]))] * 3
    clock = SimClock.fixed(AT)
    with start_dlms_server(flaky, clock=clock, seed=7) as handle:
        alone = _answered(handle.port, requests)
    clock = SimClock.fixed(AT - timedelta(hours=1))
    with start_dlms_server(flaky, clock=clock, seed=7) as handle:
        _answered(handle.port, requests[:4] + [(17, apdu) for _, apdu in requests[:6]])
        clock.set(AT)
        _answered(handle.port, [(17, apdu) for _, apdu in requests[:3]])
        busy = _answered(handle.port, requests)
    assert busy == alone
    assert 2 <= alone.count(False) <= 11  # half of them, roughly
