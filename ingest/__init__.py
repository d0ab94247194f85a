"""Ingest: MQTT (shared subscription, QoS 1, manual acks) -> validated readings -> TimescaleDB with binary COPY.

Modules, one job each: ``limits`` (named sizes), ``decode`` (payload parsing and validation, pure),
``meters`` (serial -> meter_id cache), ``writer`` (one batch in one transaction, binary COPY encoded with
amr.pgcopy; its write paths are named in ``strategy``), ``consumer`` (paho client, bounded queue, acks),
``worker`` (the loop: batch, flush, retry, ack), ``metrics`` (counters, JSON status files, Prometheus text),
``supervisor`` (N worker processes and the live status line).
"""
