"""A mixed fleet against the real simulators and the real broker: Modbus TCP, RTU over TCP and RTU on a
serial pty; vn_sim_meter, Eastron SDM630 and SDM120 maps. Every poll is published complete, with the value the
simulated meter held at the poll's instant, the catalogue unit and the right channel."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime

from amr.broker.mosquitto import LocalMosquitto
from amr.broker.topics import readings_topic, status_topic
from amr.modbus.codec import decode_value, encode_value
from amr.modbus.registermap import read_register_map
from amr.obis import BY_OBIS
from collectors.config import parse_collector_config
from collectors.runner import run_collector
from simulators.clock import SimClock
from tests.collectors.fleet import Recorder, gateway_toml, serial_pair, start_gateway, wait_until
from tests.services import endpoint

STEP_S = 900.0  # the simulated clock jumps a quarter hour between polling rounds


def expected_value(map_name: str, obis: str, model_value: float) -> float:
    """What the map carries for a model value: quantized by its data type and scale."""
    spec = read_register_map(map_name).by_obis[obis]
    return decode_value(spec, encode_value(spec, model_value))


def test_mixed_fleet_publishes_every_reading(broker: LocalMosquitto, tmp_path: object) -> None:
    clock = SimClock.fixed(datetime(2026, 10, 1, 0, 0, tzinfo=UTC))
    cid = "test-coll-fleet"
    with serial_pair() as (sim_end, col_end):
        gateways = {
            "tcp-a": start_gateway("tcp", "TFLA", [1, 2, 3, 4], clock),
            "rtu-tcp-b": start_gateway("rtu-tcp", "TFLB", [1, 5, 9], clock),
            "sdm630-c": start_gateway("tcp", "TFLC", [1, 2], clock, map_name="eastron_sdm630"),
            "sdm120-d": start_gateway("rtu-tcp", "TFLD", [7], clock, map_name="eastron_sdm120"),
            "serial-e": start_gateway("rtu-serial", "TFLE", [1, 2], clock, serial_path=sim_end, device=col_end),
        }
        try:
            text = f'collector_id = "{cid}"\nspool_dir = "{tmp_path}/spool"\nheartbeat_s = 0.5\n' + "".join(
                gateway_toml(name, gw, poll_interval_s=0.2, timeout_s=2.0) for name, gw in gateways.items()
            )
            config = parse_collector_config(text, source="fleet.toml")
            recorder = Recorder(
                endpoint(broker, "ingest"), [readings_topic(cid), status_topic(cid)], confirm=True
            ).start()
            stop = threading.Event()
            result: dict[str, object] = {}
            worker = threading.Thread(
                target=lambda: result.update(
                    snap=run_collector(config, stop, endpoint=endpoint(broker, "collector"), clock=clock.now_s)
                )
            )
            worker.start()
            steps = [clock.now_s()]
            serials = [m.serial for gw in gateways.values() for m, _ in gw.meters.values()]
            for _ in range(3):
                # Wait until every meter was read at the current instant, then move the clock on.
                now = datetime.fromtimestamp(clock.now_s(), tz=UTC).isoformat().replace("+00:00", "Z")

                def all_read(now: str = now) -> bool:
                    seen = {
                        r["meter"]
                        for b in recorder.payloads(readings_topic(cid))
                        for r in b["readings"]
                        if r["ts"].startswith(now[:19])
                    }
                    return seen >= set(serials)

                assert wait_until(all_read, 30), f"not every meter was read at {now}"
                clock.advance(STEP_S)
                steps.append(clock.now_s())
            stop.set()
            worker.join(30)
            assert not worker.is_alive()
            assert wait_until(
                lambda: any(b.get("state") == "offline" for b in recorder.payloads(status_topic(cid))), 10
            )
            recorder.stop()
        finally:
            for gw in gateways.values():
                gw.handle.stop()

    batches = recorder.payloads(readings_topic(cid))
    assert batches
    models = {m.serial: (m, map_name) for gw in gateways.values() for m, map_name in gw.meters.values()}
    polls: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for batch in batches:
        assert batch["source"] == cid and batch["v"] == 2  # columnar
        for r in batch["readings"]:
            polls[(r["meter"], r["ts"])][r["obis"]] = r
    exact = 0
    for (serial, ts_text), readings in polls.items():
        model, map_name = models[serial]
        regmap = read_register_map(map_name)
        assert set(readings) == set(regmap.by_obis), f"{serial} at {ts_text}: incomplete poll"
        ts = datetime.fromisoformat(ts_text.replace("Z", "+00:00")).timestamp()
        assert ts in steps, f"reading stamped {ts_text}, not a simulated instant"
        # A poll that was in flight while the test moved the clock holds the next instant's values.
        candidates = [ts, *[s for s in steps if s > ts][:1]]
        matched = None
        for t in candidates:
            values = model.read_registers_ts(t)
            if all(
                abs(r["value"] - expected_value(map_name, o, values[o])) <= 1e-9 * max(1.0, abs(r["value"]))
                for o, r in readings.items()
            ):
                matched = t
                break
        assert matched is not None, f"{serial} at {ts_text}: values differ from the simulated meter"
        exact += matched == ts
        for obis, r in readings.items():
            assert r["unit"] == BY_OBIS[obis].unit
    assert exact >= 0.8 * len(polls)
    # Each meter was read at each of the first three instants.
    for serial in models:
        read_at = {ts for (s, ts) in polls if s == serial}
        assert len(read_at) >= 3, f"{serial} read at {sorted(read_at)} only"
    snap = result["snap"]
    assert snap.spool_depth == 0  # type: ignore[attr-defined]
    assert snap.readings == sum(len(b["readings"]) for b in batches)  # type: ignore[attr-defined]
    statuses = recorder.payloads(status_topic(cid))
    online = [s for s in statuses if s["state"] == "online" and s["meters"]]
    assert online, "no heartbeat with meter statistics"
    stats = {m["meter"]: m for m in online[-1]["meters"]}
    assert set(stats) == set(models)
    assert all(m["successes"] >= 1 and m["attempts"] >= m["successes"] for m in stats.values())
