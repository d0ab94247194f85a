"""MQTT topic layout (version 1). Collectors and DCUs publish only under their own name (their MQTT client id);
ingest reads readings, events, DCU uplinks and status and confirms commits; the broker's ACL (ACL_PATTERNS and
ACL below) enforces this."""

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


# The broker's ACL (amr.broker.mosquitto writes it as Mosquitto's acl_file; its docstring says what it guarantees
# and what it does not). ``%c`` is the connecting client's MQTT client id, which for a collector or DCU is its name.
# Mosquitto applies ``pattern`` lines to every account, wherever they stand in the file, after that account's own
# ``topic`` lines; ``deny`` lines are checked before anything else and refuse reading and writing alike.

# (access, topic pattern) for every account: each client writes only under its own name, reads its confirmations.
ACL_PATTERNS: list[tuple[str, str]] = [
    ("write", f"{READINGS}/%c"),  # collectors (refused to dcu and monitor below)
    ("write", f"{EVENTS}/%c"),  # collectors (refused to dcu and monitor below)
    ("write", f"{DCU}/%c/uplink"),  # concentrators (refused to monitor below)
    ("write", f"{STATUS}/%c"),  # heartbeats and last wills: collectors, DCUs, ingest
    ("read", f"{CONFIRM}/%c"),  # commit confirmations (docs/delivery.md)
]

# A name is exactly one topic level: a client id holding "/" would otherwise reach deeper topics under its prefix.
_DEEPER_THAN_ONE_NAME = [
    ("deny", f"{READINGS}/+/+/#"),
    ("deny", f"{EVENTS}/+/+/#"),
    ("deny", f"{STATUS}/+/+/#"),
    ("deny", f"{DCU}/+/+/+/#"),
]

# account -> (access, topic filter) lines of that account's own, checked before ACL_PATTERNS
ACL: dict[str, list[tuple[str, str]]] = {
    "collector": [
        ("read", f"{DCU}/+/uplink"),  # a collector relays concentrators ([concentrators] in collectors.config)
        *_DEEPER_THAN_ONE_NAME,
    ],
    "dcu": [
        ("deny", f"{READINGS}/#"),
        ("deny", f"{EVENTS}/#"),
        *_DEEPER_THAN_ONE_NAME[2:],
    ],
    "ingest": [
        ("read", f"{READINGS}/#"),
        ("read", f"{EVENTS}/#"),
        ("read", f"{DCU}/+/uplink"),
        ("read", f"{STATUS}/#"),
        ("write", f"{CONFIRM}/#"),
    ],
    "monitor": [
        ("read", f"{STATUS}/#"),
        ("deny", f"{READINGS}/#"),
        ("deny", f"{EVENTS}/#"),
        ("deny", f"{DCU}/#"),
    ],
}
