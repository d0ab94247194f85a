"""Named sizes and times of the ingest pipeline, each with the reason for its value."""

from __future__ import annotations

from datetime import UTC, datetime

from amr.messages import MAX_PAYLOAD_BYTES  # noqa: F401  (the wire formats' limit, defined with them)

# Rows per COPY: large enough that per-transaction costs (commit, savepoint, upserts of meter_last_seen) are
# small beside the COPY itself, small enough that a commit (and the acks behind it) follows within ~50 ms.
BATCH_MAX_ROWS = 20_000
# A quiet trickle is committed and acknowledged after at most this long, so lag stays well under a second.
BATCH_MAX_AGE_S = 0.25
# A batch is committed once no message came for this long: the last readings of a burst need not wait for
# BATCH_MAX_AGE_S. In a steady stream messages come much closer together, so batches stay full; commits caused by
# this rule are at most 1 / BATCH_IDLE_S a second.
BATCH_IDLE_S = 0.05
# Messages per batch, for batches of tiny messages (events, status): each costs an ack and a list entry.
BATCH_MAX_MESSAGES = 2_000

# MQTT 5 Receive Maximum we announce: the broker sends at most this many unacknowledged QoS 1 messages. Since we
# acknowledge only after commit, this is THE back-pressure bound: when the database stalls, acks stop, the broker
# stops sending and keeps the rest in our persistent session. Several batches' worth keeps COPY busy while the
# next batch arrives; paho's 16-bit packet ids are far away.
RECEIVE_MAXIMUM = 1_000
# The in-process queue between paho's network thread and the writer holds every message the broker may have in
# flight to us, so a put never blocks with a conforming broker; with one that ignores Receive Maximum, the put
# blocks the network thread, which stops reading the socket (TCP back-pressure).
QUEUE_MAX_MESSAGES = RECEIVE_MAXIMUM

# Persistent session: the broker keeps our subscription and queues readings while every worker is away
# (an ingest outage over a weekend must not lose readings).
SESSION_EXPIRY_S = 7 * 24 * 3600
KEEPALIVE_S = 30

# Database retry: exponential backoff from the first to the last value while the server is down or slow.
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0

# Unknown meter serials are looked up again at most this often each, so a misconfigured collector flooding
# unknown serials cannot turn every message into a registry query.
METER_MISS_RETRY_S = 10.0

# Validity window for reading timestamps.
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE_S = 24 * 3600

# How often a worker writes its own collector_status row and its metrics file.
STATUS_INTERVAL_S = 5.0
METRICS_INTERVAL_S = 1.0

# A dead letter lists at most this many per-item reasons (a 2,000-reading message of unknown meters would
# otherwise write a 100 KB reason).
MAX_REASONS_PER_DEAD_LETTER = 10
MAX_TEXT_FIELD_CHARS = 200
# A whole dead-letter reason (it quotes client data, up to MAX_REASONS_PER_DEAD_LETTER item reasons).
MAX_REASON_CHARS = 2000

# meter_last_seen (read by the dashboards' 'silent meter' views, which look back 30 min) is written at most this
# often per worker, holding each meter's newest reading of every batch committed since. One upsert per meter costs
# PostgreSQL more than COPYing that meter's readings (measured: ~60 ms for 10,000 meters beside ~45 ms to COPY
# their 20,000 readings), so writing it with every batch cut end-to-end throughput by more than half. The price: a
# worker killed outright loses at most this long's last-seen advance (its readings are stored; the meter's next
# read sets it right). 0 writes it inside every batch's own transaction (WorkerConfig.last_seen_interval_s).
LAST_SEEN_INTERVAL_S = 2.0
# (meter, newest reading) pairs held before they are written regardless of the interval (~16 MB).
LAST_SEEN_MAX_PENDING = 1_000_000

# Deepest JSON nesting a payload may have. The wire formats need 3 (v1: object > list > reading object); an
# event's free-form ``detail`` gets the rest. Every recursive decoder (msgspec included) recurses once per level,
# so a payload nested thousands of levels deep must be refused before it reaches one (ingest.guard).
MAX_NESTING_DEPTH = 32
# Serials, client names, OBIS codes, units and event names: longer than any real one (serials are ~12-20
# characters), short enough that a hostile one cannot bloat a dead-letter reason or an index.
MAX_IDENTIFIER_CHARS = 128

# A message that was being processed when its worker died comes back from the broker with the DUP flag. Each such
# delivery is counted in the ingest_poison ledger before processing and uncounted after it; a message counted this
# many times killed that many workers and is dead-lettered instead of killing the next one. 3: one crash can be
# bad luck (an OOM kill of the whole process), three in a row on the same bytes is the message.
MAX_DELIVERY_ATTEMPTS = 3
# A worker thread that dies of an unexpected error is restarted in place (same broker session, same unacknowledged
# messages) after this pause, doubled per consecutive death up to the maximum.
RESTART_FIRST_S = 0.1
RESTART_MAX_S = 5.0

# A client status is a heartbeat: its time must be close to when it arrived. A status from the future would win
# every later comparison (collector_status keeps the newest) and freeze the row; clocks of collectors are
# NTP-synchronised, so five minutes is generous.
STATUS_MAX_FUTURE_S = 300.0

# Commit confirmations (docs/delivery.md) waiting for the broker's PUBACK. A confirmation is a convenience for
# the source (it re-sends what stays unconfirmed), so beyond this many the worker skips confirming rather than
# queueing without bound while the broker is slow; far below paho's 65,535 message ids.
CONFIRM_MAX_OUTSTANDING = 10_000
