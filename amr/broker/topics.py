"""MQTT topic layout (version 1). Collectors and DCUs publish only to their own topics; ingest subscribes
only to readings, events and DCU uplinks; the ACL in the broker config enforces exactly this."""

from __future__ import annotations

PREFIX = "amr/v1"
READINGS = f"{PREFIX}/readings"  # + "/<collector id>": normalized reading batches
EVENTS = f"{PREFIX}/events"  # + "/<collector id>": meter events
STATUS = f"{PREFIX}/status"  # + "/<client id>": heartbeats and last wills
DCU = f"{PREFIX}/dcu"  # + "/<dcu id>/uplink": concentrator pushes
CONFIRM = f"{PREFIX}/confirm"  # + "/<client id>": ingest's commit confirmations (docs/delivery.md)

INGEST_SHARE_GROUP = "ingest"


def readings_topic(collector_id: str) -> str:
    return f"{READINGS}/{collector_id}"


def events_topic(collector_id: str) -> str:
    return f"{EVENTS}/{collector_id}"


def status_topic(client_id: str) -> str:
    return f"{STATUS}/{client_id}"


def dcu_uplink_topic(dcu_id: str) -> str:
    return f"{DCU}/{dcu_id}/uplink"


def confirm_topic(client_id: str) -> str:
    """Where ingest confirms the commits of `client_id`'s messages (the MQTT 5 response topic they carry)."""
    return f"{CONFIRM}/{client_id}"


def shared(topic_filter: str, group: str = INGEST_SHARE_GROUP) -> str:
    """An MQTT 5 / Mosquitto shared subscription: the group's members split the messages between them."""
    return f"$share/{group}/{topic_filter}"


# account -> list of (access, topic pattern) as Mosquitto ACL lines read them
ACL: dict[str, list[tuple[str, str]]] = {
    "collector": [
        ("write", f"{READINGS}/#"),
        ("write", f"{EVENTS}/#"),
        ("write", f"{STATUS}/#"),
        ("read", f"{DCU}/+/uplink"),
    ],
    "dcu": [("write", f"{DCU}/+/uplink"), ("write", f"{STATUS}/#")],
    "ingest": [
        ("read", f"{READINGS}/#"),
        ("read", f"{EVENTS}/#"),
        ("read", f"{DCU}/+/uplink"),
        ("readwrite", f"{STATUS}/#"),
    ],
    "monitor": [("read", f"{STATUS}/#")],
}
