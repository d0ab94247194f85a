"""The E of VEE: a person edits a validated day, accepts it as it is, has it estimated again or undoes the last
change; and acknowledges or resolves an exception episode. Each action is a new version (never an overwrite) and
an audit row, in one transaction, on the caller's connection: the database's grants decide who may (the billing
role may, the reader may not), and a refusal becomes EditRefused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg import errors

from amr.errors import AmrError

TOTAL_CHANNEL = 1  # 1.0.1.8.0 active energy import, total


class EditRefused(AmrError):
    """The action is not allowed (role, unknown meter or day, nothing to undo)."""


@dataclass(frozen=True, kw_only=True)
class DayRef:
    serial: str
    day: date
    channel_id: int = TOTAL_CHANNEL


@dataclass(frozen=True, kw_only=True)
class Version:
    version: int
    kwh: float
    quality: str
    reason: str


_CURRENT = (
    "SELECT d.meter_id, d.version, d.measured_kwh + d.estimated_kwh, d.quality, d.reason, d.n_measured,"
    " d.n_estimated, d.flags, d.methods, d.method, d.measured_kwh, d.estimated_kwh"
    " FROM vee_daily d JOIN meters m USING (meter_id)"
    " WHERE m.serial = %s AND d.channel_id = %s AND d.day = %s FOR UPDATE OF d"
)
_NEW_VERSION = (
    "INSERT INTO vee_daily_versions (meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured,"
    " n_estimated, flags, methods, quality, method, reason, made_by, note)"
    " VALUES (%(meter_id)s, %(channel_id)s, %(day)s, %(version)s, %(measured_kwh)s, %(estimated_kwh)s,"
    " %(n_measured)s, %(n_estimated)s, %(flags)s, %(methods)s, %(quality)s, %(method)s, %(reason)s, %(made_by)s,"
    " %(note)s);"
)
_SET_CURRENT = (
    "UPDATE vee_daily SET version = %(version)s, measured_kwh = %(measured_kwh)s, estimated_kwh = %(estimated_kwh)s,"
    " n_measured = %(n_measured)s, n_estimated = %(n_estimated)s, flags = %(flags)s, methods = %(methods)s,"
    " quality = %(quality)s, method = %(method)s, reason = %(reason)s, locked = %(locked)s, made_at = now()"
    " WHERE meter_id = %(meter_id)s AND channel_id = %(channel_id)s AND day = %(day)s"
)
_AUDIT = (
    "INSERT INTO vee_audit (operator, action, meter_id, channel_id, day, episode_id, old_version, new_version,"
    " old_kwh, new_kwh, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _refuse(exc: psycopg.Error, action: str) -> EditRefused:
    if isinstance(exc, errors.InsufficientPrivilege):
        return EditRefused(f"{action}: the database role may not change validated data ({exc.diag.message_primary})")
    return EditRefused(f"{action}: {exc}")


def _current(cur: psycopg.Cursor[Any], ref: DayRef) -> tuple[Any, ...]:
    row = cur.execute(_CURRENT, (ref.serial, ref.channel_id, ref.day)).fetchone()
    if row is None:
        raise EditRefused(f"{ref.serial} channel {ref.channel_id} has no validated day {ref.day}")
    return row


def _write(cur: psycopg.Cursor[Any], values: dict[str, Any], *, locked: bool) -> None:
    cur.execute(_NEW_VERSION, values)
    cur.execute(_SET_CURRENT, values | {"locked": locked})


def edit_day(conn: psycopg.Connection, ref: DayRef, *, kwh: float, reason: str, operator: str) -> Version:
    """A new version with the day's energy set to `kwh` [kWh] (substituted, quality S), locked against automatic
    passes until it is estimated again or undone."""
    if not (kwh >= 0 and kwh < 1e9):
        raise EditRefused(f"{kwh} kWh is not a plausible day's energy")
    return _act(conn, ref, "edit", operator, reason, lambda cur: {"measured_kwh": 0.0, "estimated_kwh": kwh,
                                                                  "quality": "S", "method": None,
                                                                  "reason": "manual_edit"}, locked=True)  # fmt: skip


def accept_day(conn: psycopg.Connection, ref: DayRef, *, reason: str, operator: str) -> Version:
    """A new version with the current values, accepted as they are: automatic passes leave the day alone."""
    return _act(conn, ref, "accept", operator, reason, lambda cur: {"reason": "accept"}, locked=True)


def undo_day(conn: psycopg.Connection, ref: DayRef, *, reason: str, operator: str) -> Version:
    """A new version restoring the values of the version before the current one (the change stays in history)."""

    def previous(cur: psycopg.Cursor[Any]) -> dict[str, Any]:
        row = cur.execute(
            "SELECT measured_kwh, estimated_kwh, n_measured, n_estimated, flags, methods, quality, method, reason"
            " FROM vee_daily_versions v JOIN meters m USING (meter_id) WHERE m.serial = %s AND v.channel_id = %s"
            " AND v.day = %s ORDER BY version DESC OFFSET 1 LIMIT 1",
            (ref.serial, ref.channel_id, ref.day),
        ).fetchone()
        if row is None:
            raise EditRefused(f"{ref.serial} {ref.day}: nothing to undo (one version)")
        keys = ("measured_kwh", "estimated_kwh", "n_measured", "n_estimated", "flags", "methods", "quality", "method")
        return dict(zip(keys, row[:8], strict=True)) | {
            "reason": "undo",
            "_locked": row[8] in ("manual_edit", "accept"),
        }

    return _act(conn, ref, "undo", operator, reason, previous, locked=None)


def estimate_again(conn: psycopg.Connection, ref: DayRef, *, reason: str, operator: str) -> None:
    """Unlock the day and queue it for the next pass, which writes a fresh automatic version."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            row = _current(cur, ref)
            cur.execute(
                "UPDATE vee_daily SET locked = false WHERE meter_id = %s AND channel_id = %s AND day = %s",
                (row[0], ref.channel_id, ref.day),
            )
            cur.execute(
                "INSERT INTO vee_pending (meter_id, day) VALUES (%s, %s)"
                " ON CONFLICT (meter_id, day) DO UPDATE SET marks = vee_pending.marks + 1, touched_at = now()",
                (row[0], ref.day),
            )
            cur.execute(_AUDIT, (operator, "estimate_again", row[0], ref.channel_id, ref.day, None, row[1], None,
                                 row[2], None, reason))  # fmt: skip
    except psycopg.Error as exc:
        raise _refuse(exc, "estimate again") from exc


def _act(
    conn: psycopg.Connection, ref: DayRef, action: str, operator: str, reason: str, change: Any, *, locked: bool | None
) -> Version:
    if not reason.strip():
        raise EditRefused(f"{action} needs a reason")
    try:
        with conn.transaction(), conn.cursor() as cur:
            row = _current(cur, ref)
            meter_id, version, old_kwh = row[0], int(row[1]), float(row[2])
            values: dict[str, Any] = {
                "meter_id": meter_id,
                "channel_id": ref.channel_id,
                "day": ref.day,
                "version": version + 1,
                "measured_kwh": row[10],
                "estimated_kwh": row[11],
                "n_measured": row[5],
                "n_estimated": row[6],
                "flags": row[7],
                "methods": row[8],
                "quality": row[3],
                "method": row[9],
                "made_by": operator,
                "note": reason,
            }
            update = change(cur)
            lock = bool(update.pop("_locked", False)) if locked is None else locked
            values |= update
            _write(cur, values, locked=lock)
            new_kwh = float(values["measured_kwh"]) + float(values["estimated_kwh"])
            cur.execute(_AUDIT, (operator, action, meter_id, ref.channel_id, ref.day, None, version, version + 1,
                                 old_kwh, new_kwh, reason))  # fmt: skip
            return Version(version=version + 1, kwh=new_kwh, quality=str(values["quality"]), reason=values["reason"])
    except psycopg.Error as exc:
        raise _refuse(exc, action) from exc


def review_episode(conn: psycopg.Connection, episode_id: int, *, status: str, note: str, operator: str) -> None:
    """Acknowledge (still open for data, no longer for people) or resolve an episode, with a note."""
    if status not in ("acknowledged", "resolved"):
        raise EditRefused(f"an episode is acknowledged or resolved, not {status!r}")
    if not note.strip():
        raise EditRefused("a review needs a note")
    try:
        with conn.transaction(), conn.cursor() as cur:
            row = cur.execute(
                "UPDATE vee_episodes SET status = %s, note = %s, closed_by = %s, updated_at = now(),"
                " closed_at = CASE WHEN %s = 'resolved' THEN now() ELSE closed_at END"
                " WHERE episode_id = %s RETURNING meter_id, channel_id",
                (status, note, operator, status, episode_id),
            ).fetchone()
            if row is None:
                raise EditRefused(f"no episode {episode_id}")
            cur.execute(_AUDIT, (operator, "acknowledge" if status == "acknowledged" else "resolve", row[0], row[1],
                                 None, episode_id, None, None, None, None, note))  # fmt: skip
    except psycopg.Error as exc:
        raise _refuse(exc, status) from exc
