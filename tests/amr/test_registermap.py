"""Register-map files: validation with file and line in the error, codec round trips, block planning."""

from __future__ import annotations

import math
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amr.errors import ConfigError
from amr.modbus.codec import (
    decode_block,
    decode_value,
    encode_image,
    encode_value,
    plan_reads,
)
from amr.modbus.registermap import (
    RegisterSpec,
    WordOrder,
    parse_register_map,
    read_register_map,
    shipped_maps,
)
from amr.obis import BY_OBIS

HEAD = '[map]\nname = "t"\nmodel = "test"\n'


def reg(name: str, obis: str, address: int, dtype: str = "uint32", unit: str | None = None, extra: str = "") -> str:
    unit = unit or (BY_OBIS[obis].unit if obis in BY_OBIS else "kWh")
    return (
        f'\n[[register]]\nname = "{name}"\nobis = "{obis}"\nfunction = "input"\naddress = {address}\n'
        f'type = "{dtype}"\nscale = 0.001\nunit = "{unit}"\n{extra}'
    )


def refused(text: str, tmp_path, *needles: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_register_map(path)
    msg = str(err.value)
    assert str(path) in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_shipped_maps_load_and_use_catalogue_units() -> None:
    assert {"vn_sim_meter", "eastron_sdm120", "eastron_sdm630"} <= set(shipped_maps())
    vn = read_register_map("vn_sim_meter")
    assert {r.obis for r in vn.registers} == set(BY_OBIS)  # every catalogue channel
    sdm = read_register_map("eastron_sdm630")
    addr = {r.name: r.address for r in sdm.registers}
    assert addr["phase1_voltage"] == 0 and addr["phase3_current"] == 0x0A and addr["total_system_power"] == 0x34
    assert addr["frequency"] == 0x46 and addr["import_active_energy"] == 0x48 and addr["export_active_energy"] == 0x4A
    assert all(r.dtype == "float32" and r.word_order == "big" and r.function == "input" for r in sdm.registers)
    sdm120 = {r.name: r.address for r in read_register_map("eastron_sdm120").registers}
    assert sdm120["voltage"] == 0 and sdm120["current"] == 6 and sdm120["active_power"] == 0x0C


def test_eastron_demand_and_total_energy_addresses_are_the_published_ones() -> None:
    """Eastron's lists (sources in the map headers): SDM630 30087 = 0x0056 maximum total system power demand
    (0x0058 is undefined there; on the SDM120 it is the *current* import demand), SDM120 30091 = 0x005A maximum
    import demand, both 30343 = 0x0156 "Total kWh" (import + export, OBIS 1.0.15.8.0)."""
    sdm630 = read_register_map("eastron_sdm630").by_obis
    sdm120 = read_register_map("eastron_sdm120").by_obis
    assert sdm630["1.0.1.6.0.255"].address == 0x0056
    assert sdm120["1.0.1.6.0.255"].address == 0x005A
    for by_obis in (sdm630, sdm120):
        total = by_obis["1.0.15.8.0.255"]
        assert (total.address, total.dtype, total.unit, total.scale) == (0x0156, "float32", "kWh", 1.0)
        assert by_obis["1.0.1.6.0.255"].scale == 0.001  # W on the wire -> kW
    assert all(r.address not in range(0x0058, 0x0064) for r in sdm630.values())


def test_unknown_obis_names_file_and_line(tmp_path) -> None:
    text = HEAD + reg("a", "1.0.1.8.0.255", 0) + reg("b", "1.0.99.8.0.255", 2)
    # the second entry's obis key is on line 16
    refused(text, tmp_path, ":16", "'b'", "unknown OBIS code '1.0.99.8.0.255'")


def test_overlapping_registers_are_refused(tmp_path) -> None:
    text = HEAD + reg("a", "1.0.1.8.0.255", 0) + reg("b", "1.0.2.8.0.255", 1)
    refused(text, tmp_path, "overlap", "'a'", "'b'", ":14")


def test_unit_must_match_catalogue(tmp_path) -> None:
    text = HEAD + reg("a", "1.0.1.8.0.255", 0, unit="Wh")
    refused(text, tmp_path, ":12", "unit 'Wh'", "'kWh'")


def test_address_out_of_range_and_bad_type(tmp_path) -> None:
    refused(HEAD + reg("a", "1.0.1.8.0.255", 65535), tmp_path, "runs past", ":9")
    refused(HEAD + reg("a", "1.0.1.8.0.255", 0, dtype="float16"), tmp_path, "type must be", ":10")
    refused(HEAD + reg("a", "1.0.1.8.0.255", -1), tmp_path, "address must be")


def test_unknown_and_missing_keys_and_bad_toml(tmp_path) -> None:
    refused(HEAD + reg("a", "1.0.1.8.0.255", 0, extra='wordorder = "big"\n'), tmp_path, "unknown key", "wordorder")
    refused(HEAD + '\n[[register]]\nname = "a"\nobis = "1.0.1.8.0.255"\n', tmp_path, "missing required key")
    refused(HEAD + "[[register]\n", tmp_path, "not valid TOML")
    refused('[map]\nname = "x"\n' + reg("a", "1.0.1.8.0.255", 0), tmp_path, "model")
    refused(HEAD + reg("a", "1.0.1.8.0.255", 0) + reg("b", "1.0.1.8.0.255", 4), tmp_path, "already mapped")


def spec(dtype: str, order: str = "big", scale: float = 1.0) -> RegisterSpec:
    return RegisterSpec(
        name="x", obis="1.0.1.8.0.255", function="input", address=0, dtype=dtype,
        word_order=cast(WordOrder, order), scale=scale, unit="kWh",
    )  # fmt: skip


def test_codec_word_layout_is_the_published_one() -> None:
    assert encode_value(spec("float32"), 1.0) == [0x3F80, 0x0000]
    assert encode_value(spec("float32", "little"), 1.0) == [0x0000, 0x3F80]
    assert encode_value(spec("uint32", scale=0.001), 65.537) == [0x0001, 0x0001]
    assert encode_value(spec("int16"), -2) == [0xFFFE]
    assert encode_value(spec("uint16"), 1e9) == [0xFFFF]  # saturates instead of wrapping


@given(
    st.sampled_from(["uint16", "int16", "uint32", "int32", "uint64", "float32", "float64"]),
    st.sampled_from(["big", "little"]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_codec_round_trip(dtype: str, order: str, value: float) -> None:
    s = spec(dtype, order, scale=0.01)
    got = decode_value(s, encode_value(s, value))
    if dtype.startswith("float"):
        assert math.isclose(got, value, rel_tol=1e-6, abs_tol=1e-3)
    else:
        lo, hi = {"uint16": (0, 655.35), "int16": (-327.68, 327.67), "uint32": (0, 4e7), "int32": (-2e7, 2e7)}.get(
            dtype, (0, 1e20)
        )
        assert got == pytest.approx(min(max(value, lo), hi), abs=0.0051)


def test_plan_reads_coalesces_gaps_and_limits_blocks() -> None:
    text = HEAD + "".join(
        reg(f"r{i}", o, a)
        for i, (o, a) in enumerate([("1.0.1.8.0.255", 0), ("1.0.2.8.0.255", 6), ("1.0.3.8.0.255", 200)])
    )
    rm = parse_register_map(text)
    plan = plan_reads(rm)
    assert [(p.address, p.count) for p in plan] == [(0, 8), (200, 2)]
    assert [(p.address, p.count) for p in plan_reads(rm, max_gap=2)] == [(0, 2), (6, 2), (200, 2)]
    many = HEAD + "".join(
        reg(f"v{i}", o, 62 * i) for i, o in enumerate(["1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.3.8.0.255"])
    )
    wide = parse_register_map(many)
    for p in plan_reads(wide, max_gap=100):
        assert p.count <= 125
    assert [(p.address, p.count) for p in plan_reads(wide, max_gap=100)] == [(0, 64), (124, 2)]


def test_image_decodes_back_through_the_plan() -> None:
    vn = read_register_map("vn_sim_meter")
    values = {r.obis: (i + 1) * 1.5 for i, r in enumerate(vn.registers)}
    image = encode_image(vn, "input", values)
    words = [int.from_bytes(image[i : i + 2], "big") for i in range(0, len(image), 2)]
    (req,) = plan_reads(vn)
    got = decode_block(req, words[req.address : req.address + req.count])
    for obis, v in values.items():
        assert got[obis] == pytest.approx(v, abs=abs(vn.by_obis[obis].scale))
