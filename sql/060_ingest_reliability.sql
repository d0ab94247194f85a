-- Ingest reliability: dead letters stored once per distinct message, and the poison ledger.

-- A crash between the commit holding a dead letter and the MQTT acknowledgement makes the broker deliver the
-- message again; a concentrator replays its buffer. The SHA-256 of topic, NUL, payload names the message, so it
-- is dead-lettered once. Rows from before this migration keep NULL (a unique index allows many NULLs).
ALTER TABLE dead_letters ADD COLUMN message_sha256 bytea;
CREATE UNIQUE INDEX dead_letters_message_sha256 ON dead_letters (message_sha256);

-- Deliveries of a redelivered message (MQTT DUP flag) that were being processed when their worker died.
-- A worker counts a redelivery before processing it and uncounts it after; a message whose count exceeds the
-- limit (ingest.limits.MAX_DELIVERY_ATTEMPTS) killed that many workers and is dead-lettered instead of
-- processed. Rows of messages whose batch committed are deleted in that transaction.
CREATE TABLE ingest_poison (
    message_sha256 bytea PRIMARY KEY,
    topic          text NOT NULL,
    attempts       integer NOT NULL CHECK (attempts >= 0),
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON ingest_poison TO amr_ingest;
