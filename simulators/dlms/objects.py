"""The COSEM objects a simulated meter exposes and how their attributes are A-XDR encoded (pure, no I/O).

Objects (logical name -> interface class):

- Register (class 3) for every catalogue channel with a value on the wire (energy totals and rates, maximum
  demand, voltages, currents, power, power factor, frequency): attribute 2 value (integer in the base unit times
  10^-scaler), attribute 3 scaler_unit. Energies go out in Wh / varh, power in W: the catalogue's kWh / kvarh / kW
  are recovered by the reader through scaler_unit, as with real meters.
- Data (class 1) 0.0.96.1.0.255 serial number (visible-string), 0.0.96.10.1.255 AMR profile status (unsigned).
- Clock (class 8) 0.0.1.0.0.255: attribute 2 the meter's local time (UTC+7, deviation -420) with its drift,
  attribute 3 time_zone.
- Profile Generic (class 7) 1.0.99.1.0.255 load profile: attribute 2 buffer (whole, by range descriptor on the
  clock column, or by entry descriptor), 3 capture objects, 4 capture period [s], 7 entries in use, 8 profile
  entries. Entries are numbered 1 (the oldest the buffer holds) to entries-in-use (the newest); columns 1 to 6.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from dlms_cosem import dlms_data, time, utils
from dlms_cosem.enumerations import DataAccessResult

from amr.timebase import LOCAL_TZ  # Vietnamese meters keep local time
from simulators.dlms.source import MeterSource

CLASS_DATA = 1
CLASS_REGISTER = 3
CLASS_PROFILE_GENERIC = 7
CLASS_CLOCK = 8

CLOCK_OBIS = "0.0.1.0.0.255"
SERIAL_OBIS = "0.0.96.1.0.255"
STATUS_OBIS = "0.0.96.10.1.255"
LOAD_PROFILE_OBIS = "1.0.99.1.0.255"


# DLMS unit codes (IEC 62056-62, the Blue Book's unit table) used here.
UNIT_SECOND = 7
UNIT_W = 27
UNIT_WH = 30
UNIT_VARH = 32
UNIT_A = 33
UNIT_V = 35
UNIT_HZ = 44
UNIT_NONE = 255


class AccessError(Exception):
    """A GET the meter refuses; carries the data-access-result it answers with."""

    def __init__(self, result: DataAccessResult) -> None:
        self.result = result
        super().__init__(result.name)


@dataclass(frozen=True, kw_only=True)
class RegisterSpec:
    """How one catalogue channel is carried in a Register: raw = round(value * base_per_unit / 10**scaler)."""

    obis: str
    scaler: int
    unit_code: int
    base_per_unit: float  # catalogue unit -> DLMS base unit (kWh -> Wh: 1000)
    data_type: Callable[[int], dlms_data.BaseDlmsData]

    def raw(self, value: float) -> int:
        return round(value * self.base_per_unit / 10**self.scaler)


def _reg(obis: str, scaler: int, unit_code: int, base_per_unit: float, data_type: type) -> RegisterSpec:
    return RegisterSpec(obis=obis, scaler=scaler, unit_code=unit_code, base_per_unit=base_per_unit, data_type=data_type)


_ENERGY = dlms_data.DoubleLongUnsignedData
REGISTERS: dict[str, RegisterSpec] = {
    spec.obis: spec
    for spec in (
        _reg("1.0.1.8.0.255", 0, UNIT_WH, 1000.0, _ENERGY),
        _reg("1.0.1.8.1.255", 0, UNIT_WH, 1000.0, _ENERGY),
        _reg("1.0.1.8.2.255", 0, UNIT_WH, 1000.0, _ENERGY),
        _reg("1.0.1.8.3.255", 0, UNIT_WH, 1000.0, _ENERGY),
        _reg("1.0.2.8.0.255", 0, UNIT_WH, 1000.0, _ENERGY),
        _reg("1.0.15.8.0.255", 0, UNIT_WH, 1000.0, _ENERGY),
        _reg("1.0.3.8.0.255", 0, UNIT_VARH, 1000.0, _ENERGY),
        _reg("1.0.4.8.0.255", 0, UNIT_VARH, 1000.0, _ENERGY),
        _reg("1.0.1.6.0.255", 0, UNIT_W, 1000.0, dlms_data.DoubleLongUnsignedData),
        _reg("1.0.32.7.0.255", -1, UNIT_V, 1.0, dlms_data.UnsignedLongData),
        _reg("1.0.52.7.0.255", -1, UNIT_V, 1.0, dlms_data.UnsignedLongData),
        _reg("1.0.72.7.0.255", -1, UNIT_V, 1.0, dlms_data.UnsignedLongData),
        _reg("1.0.31.7.0.255", -3, UNIT_A, 1.0, dlms_data.DoubleLongUnsignedData),
        _reg("1.0.51.7.0.255", -3, UNIT_A, 1.0, dlms_data.DoubleLongUnsignedData),
        _reg("1.0.71.7.0.255", -3, UNIT_A, 1.0, dlms_data.DoubleLongUnsignedData),
        _reg("1.0.1.7.0.255", 0, UNIT_W, 1000.0, dlms_data.DoubleLongData),
        _reg("1.0.13.7.0.255", -3, UNIT_NONE, 1.0, dlms_data.LongData),
        _reg("1.0.14.7.0.255", -2, UNIT_HZ, 1.0, dlms_data.UnsignedLongData),
    )
}

# Load profile columns after the clock and the status: cumulative energies, as utility interval profiles carry.
PROFILE_REGISTER_COLUMNS: tuple[str, ...] = ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.3.8.0.255", "1.0.4.8.0.255")
PROFILE_COLUMNS = 2 + len(PROFILE_REGISTER_COLUMNS)  # clock, status, registers


class _Null(dlms_data.NullData):
    """null-data; dlms-cosem's NullData cannot encode itself."""

    def to_bytes(self) -> bytes:
        return b"\x00"


def obis_bytes(obis: str) -> bytes:
    return bytes(int(part) for part in obis.split("."))


def obis_str(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def encode_datetime(at: datetime) -> bytes:
    """A-XDR date-time octet string (12 bytes) in meter local time."""
    return time.datetime_to_bytes(at.astimezone(LOCAL_TZ))


def decode_datetime(raw: bytes) -> datetime:
    """12-byte COSEM date-time -> aware UTC; deviation 0x8000 (not specified) means meter local time.

    Decoded here rather than by dlms-cosem, which reads a deviation of 0 (UTC) as "not specified"."""
    if len(raw) != 12:
        raise AccessError(DataAccessResult.TYPE_UNMATCHED)
    year = int.from_bytes(raw[0:2], "big")
    month, day, _weekday, hour, minute, second, hundredths = raw[2:9]
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    tz = LOCAL_TZ if deviation == -0x8000 else timezone(timedelta(minutes=-deviation))
    try:
        local = datetime(year, month, day, hour, minute, second, (hundredths % 100) * 10_000, tzinfo=tz)
    except ValueError:
        raise AccessError(DataAccessResult.TYPE_UNMATCHED) from None
    return local.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class RangeSelection:
    """Selective access 1 (range_descriptor) on a Profile Generic buffer."""

    class_id: int
    obis: str
    attribute: int
    start: datetime  # UTC
    end: datetime  # UTC


@dataclass(frozen=True, kw_only=True)
class EntrySelection:
    """Selective access 2 (entry_descriptor) on a Profile Generic buffer (DLMS Blue Book, IC 7 attribute 2).

    Entries and columns (selected values) count from 1; a ``to_`` bound of 0 means "up to the last"."""

    from_entry: int
    to_entry: int
    from_selected_value: int
    to_selected_value: int


# entry_descriptor ::= structure { from_entry double-long-unsigned, to_entry double-long-unsigned,
#                                  from_selected_value long-unsigned, to_selected_value long-unsigned }
_STRUCTURE, _DOUBLE_LONG_UNSIGNED, _LONG_UNSIGNED = 0x02, 0x06, 0x12
_ENTRY_DESCRIPTOR_FIELDS = (_DOUBLE_LONG_UNSIGNED, _DOUBLE_LONG_UNSIGNED, _LONG_UNSIGNED, _LONG_UNSIGNED)
_AXDR_WIDTH = {_DOUBLE_LONG_UNSIGNED: 4, _LONG_UNSIGNED: 2}
SELECTOR_RANGE = 1
SELECTOR_ENTRY = 2


def parse_entry_descriptor(raw: bytes) -> EntrySelection:
    """The A-XDR entry_descriptor (the parameters of selector 2), parsed here: dlms-cosem cannot decode it."""
    if len(raw) < 2 or raw[0] != _STRUCTURE or raw[1] != len(_ENTRY_DESCRIPTOR_FIELDS):
        raise AccessError(DataAccessResult.TYPE_UNMATCHED)
    values: list[int] = []
    pos = 2
    for tag in _ENTRY_DESCRIPTOR_FIELDS:
        width = _AXDR_WIDTH[tag]
        if pos + 1 + width > len(raw) or raw[pos] != tag:
            raise AccessError(DataAccessResult.TYPE_UNMATCHED)
        values.append(int.from_bytes(raw[pos + 1 : pos + 1 + width], "big"))
        pos += 1 + width
    if pos != len(raw):  # the descriptor ends the GET.request: anything after it is a malformed request
        raise AccessError(DataAccessResult.TYPE_UNMATCHED)
    return EntrySelection(
        from_entry=values[0], to_entry=values[1], from_selected_value=values[2], to_selected_value=values[3]
    )


def parse_access_selection(raw: bytes) -> RangeSelection | EntrySelection:
    """The access-selection part of a GET.request (selector byte, then its parameters)."""
    if raw and raw[0] == SELECTOR_ENTRY:
        return parse_entry_descriptor(raw[1:])
    if not raw or raw[0] != SELECTOR_RANGE:
        raise AccessError(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)  # range and entry descriptors are offered
    try:
        restricting, start, end, _selected = utils.parse_as_dlms_data(raw[1:])
        class_id, logical_name, attribute, _data_index = restricting
    except Exception:  # the A-XDR decoder raises several types on malformed input
        raise AccessError(DataAccessResult.TYPE_UNMATCHED) from None
    return RangeSelection(
        class_id=int(class_id),
        obis=obis_str(bytes(logical_name)),
        attribute=int(attribute),
        start=decode_datetime(bytes(start)),
        end=decode_datetime(bytes(end)),
    )


def _struct(*items: dlms_data.BaseDlmsData) -> dlms_data.DataStructure:
    return dlms_data.DataStructure(list(items))


def _capture_object(class_id: int, obis: str, attribute: int) -> dlms_data.DataStructure:
    return _struct(
        dlms_data.UnsignedLongData(class_id),
        dlms_data.OctetStringData(obis_bytes(obis)),
        dlms_data.IntegerData(attribute),
        dlms_data.UnsignedLongData(0),
    )


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    interval_s: int = 1800  # capture period: 30 min, the Vietnamese AMR load-profile interval
    depth_entries: int = 1440  # buffer depth: 30 days of 30-min entries, older entries are overwritten


class CosemMeter:
    """One meter's COSEM object model over a `MeterSource`, evaluated at a given true time."""

    def __init__(self, source: MeterSource, profile: ProfileConfig | None = None) -> None:
        self.source = source
        self.profile = profile or ProfileConfig()

    def get(self, class_id: int, obis: str, attribute: int, access: object, now: datetime) -> bytes:
        """The encoded Data of one attribute; raises AccessError for what the meter does not have."""
        if attribute == 1:
            if not self._exists(class_id, obis):
                raise AccessError(DataAccessResult.OBJECT_UNDEFINED)
            return dlms_data.OctetStringData(obis_bytes(obis)).to_bytes()
        if access is not None and not (class_id == CLASS_PROFILE_GENERIC and attribute == 2):
            raise AccessError(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)
        if class_id == CLASS_REGISTER and obis in REGISTERS:
            return self._register(REGISTERS[obis], attribute, now)
        if class_id == CLASS_CLOCK and obis == CLOCK_OBIS:
            return self._clock(attribute, now)
        if class_id == CLASS_DATA and obis == SERIAL_OBIS and attribute == 2:
            return dlms_data.VisibleStringData(self.source.serial).to_bytes()
        if class_id == CLASS_DATA and obis == STATUS_OBIS and attribute == 2:
            status = int(self.source.read_registers(now).get(STATUS_OBIS, 0))
            return dlms_data.UnsignedIntegerData(status).to_bytes()
        if class_id == CLASS_PROFILE_GENERIC and obis == LOAD_PROFILE_OBIS:
            return self._profile(attribute, access, now)
        if self._exists_any_class(obis):
            raise AccessError(DataAccessResult.OBJECT_CLASS_INCONSISTENT)
        raise AccessError(DataAccessResult.OBJECT_UNDEFINED)

    @staticmethod
    def _exists(class_id: int, obis: str) -> bool:
        return (
            (class_id == CLASS_REGISTER and obis in REGISTERS)
            or (class_id == CLASS_CLOCK and obis == CLOCK_OBIS)
            or (class_id == CLASS_DATA and obis in (SERIAL_OBIS, STATUS_OBIS))
            or (class_id == CLASS_PROFILE_GENERIC and obis == LOAD_PROFILE_OBIS)
        )

    @staticmethod
    def _exists_any_class(obis: str) -> bool:
        return obis in REGISTERS or obis in (CLOCK_OBIS, SERIAL_OBIS, STATUS_OBIS, LOAD_PROFILE_OBIS)

    def _register(self, spec: RegisterSpec, attribute: int, now: datetime) -> bytes:
        if attribute == 2:
            values = self.source.read_registers(now)
            if spec.obis not in values:
                raise AccessError(DataAccessResult.OBJECT_UNAVAILABLE)
            return spec.data_type(spec.raw(values[spec.obis])).to_bytes()
        if attribute == 3:
            return _struct(dlms_data.IntegerData(spec.scaler), dlms_data.EnumData(spec.unit_code)).to_bytes()
        raise AccessError(DataAccessResult.OBJECT_UNDEFINED)

    def _clock(self, attribute: int, now: datetime) -> bytes:
        if attribute == 2:
            meter_time = now + timedelta(seconds=self.source.clock_offset_s(now))
            return dlms_data.OctetStringData(encode_datetime(meter_time)).to_bytes()
        if attribute == 3:
            # DLMS deviation is minutes from local time to UTC (-420 for UTC+7).
            offset = LOCAL_TZ.utcoffset(None)
            return dlms_data.LongData(-int(offset.total_seconds() // 60)).to_bytes()
        raise AccessError(DataAccessResult.OBJECT_UNDEFINED)

    # -- load profile -------------------------------------------------------------------------------------------

    def _profile(self, attribute: int, access: object, now: datetime) -> bytes:
        interval_s = self.profile.interval_s
        if attribute == 2:
            first, last = self.profile_window(now)
            if isinstance(access, RangeSelection):
                first, last = self._clip(first, last, access)
            elif isinstance(access, EntrySelection):
                first, last, selected = self._by_entry(first, last, access)
                return self.encode_buffer(first, last, columns=selected)
            elif access is not None:
                raise AccessError(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)
            return self.encode_buffer(first, last)
        if attribute == 3:
            columns = [
                _capture_object(CLASS_CLOCK, CLOCK_OBIS, 2),
                _capture_object(CLASS_DATA, STATUS_OBIS, 2),
                *(_capture_object(CLASS_REGISTER, obis, 2) for obis in PROFILE_REGISTER_COLUMNS),
            ]
            return dlms_data.DataArray(columns).to_bytes()
        if attribute == 4:
            return dlms_data.DoubleLongUnsignedData(interval_s).to_bytes()
        if attribute == 7:
            first, last = self.profile_window(now)
            count = 0 if last < first else int((last - first).total_seconds() // interval_s) + 1
            return dlms_data.DoubleLongUnsignedData(count).to_bytes()
        if attribute == 8:
            return dlms_data.DoubleLongUnsignedData(self.profile.depth_entries).to_bytes()
        raise AccessError(DataAccessResult.OBJECT_UNDEFINED)

    def profile_window(self, now: datetime) -> tuple[datetime, datetime]:
        """First and last capture times [UTC] the buffer holds at `now`: completed intervals, at most `depth`."""
        interval_s = self.profile.interval_s
        epoch_s = now.timestamp()
        last = datetime.fromtimestamp(math.floor(epoch_s / interval_s) * interval_s, UTC)
        first = last - timedelta(seconds=interval_s * (self.profile.depth_entries - 1))
        return first, last

    def _clip(self, first: datetime, last: datetime, access: RangeSelection) -> tuple[datetime, datetime]:
        if access.class_id != CLASS_CLOCK or access.obis != CLOCK_OBIS or access.attribute != 2:
            raise AccessError(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)
        lo, hi = access.start, access.end
        interval_s = self.profile.interval_s
        # Round the lower bound up to a capture time so only entries inside [from, to] are returned.
        lo_aligned = datetime.fromtimestamp(math.ceil(lo.timestamp() / interval_s) * interval_s, UTC)
        return max(first, lo_aligned), min(last, hi)

    def _by_entry(self, first: datetime, last: datetime, access: EntrySelection) -> tuple[datetime, datetime, slice]:
        """Capture times and columns of an entry selection. Entry k (from 1, the oldest held) was captured at
        first + (k - 1) x interval. Entries past the newest give an empty array, as a shorter buffer would; a
        reversed entry range or a column outside the capture objects is refused (scope of access violated)."""
        interval = timedelta(seconds=self.profile.interval_s)
        in_use = 0 if last < first else (last - first) // interval + 1
        from_entry = max(access.from_entry, 1)  # entry 0 does not exist: read from the first
        to_entry = in_use if access.to_entry == 0 else min(access.to_entry, in_use)
        if access.to_entry != 0 and access.to_entry < from_entry:
            raise AccessError(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)
        n_columns = PROFILE_COLUMNS
        from_col = max(access.from_selected_value, 1)
        to_col = n_columns if access.to_selected_value == 0 else access.to_selected_value
        if not from_col <= to_col <= n_columns:
            raise AccessError(DataAccessResult.SCOPE_OF_ACCESS_VIOLATED)
        start = first + (from_entry - 1) * interval
        end = first + (to_entry - 1) * interval  # before start when nothing is selected: an empty buffer
        return start, end, slice(from_col - 1, to_col)

    def encode_buffer(self, first: datetime, last: datetime, *, columns: slice | None = None) -> bytes:
        """The buffer's entries captured in [first, last], each a structure of its columns (all, or `columns`)."""
        entries = self.profile_entries(first, last) if first <= last else []
        keep = columns or slice(None)
        rows = [
            _struct(
                *[
                    dlms_data.OctetStringData(encode_datetime(ts)),
                    dlms_data.UnsignedIntegerData(int(values.get(STATUS_OBIS, 0))),
                    *(self._profile_cell(obis, values) for obis in PROFILE_REGISTER_COLUMNS),
                ][keep]
            )
            for ts, values in entries
        ]
        return dlms_data.DataArray(rows).to_bytes()

    def profile_entries(self, first: datetime, last: datetime) -> list[tuple[datetime, Mapping[str, float]]]:
        """The model's captures with first <= ts <= last, in time order."""
        interval_s = self.profile.interval_s
        got: Sequence[tuple[datetime, Mapping[str, float]]] = self.source.load_profile(first, last, interval_s)
        return sorted(((ts, v) for ts, v in got if first <= ts <= last), key=lambda e: e[0])

    @staticmethod
    def _profile_cell(obis: str, values: Mapping[str, float]) -> dlms_data.BaseDlmsData:
        if obis not in values:
            return _Null(None)
        spec = REGISTERS[obis]
        return spec.data_type(spec.raw(values[obis]))
