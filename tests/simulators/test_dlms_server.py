"""The DLMS/COSEM simulator read over real TCP with the independent dlms-cosem client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dlms_cosem import cosem, enumerations, exceptions, time, utils
from dlms_cosem.client import DlmsClient
from dlms_cosem.cosem.selective_access import CaptureObject, RangeDescriptor
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import LowLevelSecurityAuthentication, NoSecurityAuthentication

from simulators.clock import SimClock
from simulators.dlms import start_dlms_server
from simulators.dlms.server import DlmsServerHandle
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
    assert shown.utcoffset() == timedelta(hours=7)


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
