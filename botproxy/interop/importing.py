"""`botproxy import`: files in, one new session out, in one transaction."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from .. import store
from ..errors import StoreError, UsageError
from ..record.recorder import RequestSeen, ResponseSeen, Row, SessionRecorder, WebSocketSeen
from ..record.session import session_row, utc_now
from ..wire.redact import Redactor
from . import flows, har, playground, traffic, transcript

Event = RequestSeen | ResponseSeen | WebSocketSeen


def read_file(path: Path) -> tuple[str, Any]:
    """(kind, parsed content) of one file: `har` (JSON with `log.entries`), `flows` (a mitmproxy flow
    file), `playground` (an Agents Playground events recording) or `transcript`; UsageError for
    anything else."""
    if not path.is_file():
        raise UsageError(f"cannot import {path}: no such file")
    try:
        data = transcript.load_json(path)
    except transcript.NotATranscript:
        recording = _playground_recording(path)
        if recording is not None:
            return "playground", recording
        try:
            return "flows", flows.read(path, f"{path.name}#")
        except flows.NotFlows as exc:
            raise UsageError(
                f"cannot import {path}: not a HAR, mitmproxy flow or .transcript file, nor an Agents Playground"
                f" recording (not JSON; {exc})"
            ) from None
    if playground.is_event(data):  # a recording of one exchange is one JSON object
        return "playground", _playground_recording(path)
    if har.is_har(data):
        try:
            return "har", har.read(data, f"{path.name}#")
        except har.NotAHar as exc:
            raise UsageError(f"cannot import {path}: {exc}") from None
    try:
        transcript.activity_list(data)
    except transcript.NotATranscript as exc:
        raise UsageError(f"cannot import {path}: not a HAR, mitmproxy flow or .transcript file ({exc})") from None
    return "transcript", data


def _playground_recording(path: Path) -> list[traffic.Captured] | None:
    """An Agents Playground events recording's exchanges; None when the file is not one."""
    try:
        events = playground.parse(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        return None
    except playground.NotARecording as exc:
        if exc.events_read:  # it is one, cut off or damaged after its first events
            raise UsageError(f"cannot import {path}: an Agents Playground recording, but {exc}") from None
        return None
    try:
        return playground.read(events, f"{path.name}#")
    except playground.NotARecording as exc:
        raise UsageError(f"cannot import {path}: {exc}") from None


def import_files(db_path: str, paths: Iterable[str | Path], name: str | None = None) -> dict[str, Any]:
    """Import files into one new session; returns the session summary. Nothing is written on failure."""
    files = [Path(p) for p in paths]
    if not files:
        raise UsageError("nothing to import: give one or more files")
    transcripts: list[tuple[str, Any]] = []
    captured: list[traffic.Captured] = []
    kinds: list[str] = []
    for n, path in enumerate(files):
        kind, data = read_file(path)
        kinds.append(kind)
        if kind == "transcript":
            transcripts.append((path.name, data))
        else:
            for record in data:
                record.flow_id = f"{n}:{record.flow_id}"
            captured += _ordered_after(captured, data)
    if transcripts and captured:
        raise UsageError("cannot import .transcript files and captures (HAR, flow files) into one session")
    session_name = name or f"import-{files[0].stem}-{utc_now()[:19].replace(':', '').replace('-', '')}"
    notes = "imported from " + ", ".join(str(p) for p in files)
    capture = "+".join(sorted(set(kinds)))
    if captured:
        fields = captured_fields(captured)
        return write_session(
            db_path, session_name, traffic.events(captured), capture_mode=capture, notes=notes, **fields
        )
    parsed = transcript.read(transcripts) if transcripts else None
    events: list[Event] = list(transcript.events(parsed)) if parsed else []
    # A transcript does not say how the bot answered the channel's POST (200? 201?) unless the answer
    # carried something (an invoke response, expected replies): those statuses are left unknown.
    guessed = {
        n
        for n, e in enumerate((e for e in events if isinstance(e, RequestSeen)), 1)
        if e.listener == "reverse" and transcript.status_unknown(e.content)
    }
    if parsed is not None and parsed.placeholder_service_url:
        notes += f"; serviceUrl missing in the transcript, {transcript.PLACEHOLDER_SERVICE_URL} stands in for it"
    return write_session(db_path, session_name, events, unknown_status=guessed, capture_mode=capture, notes=notes)


def captured_fields(records: list[traffic.Captured]) -> dict[str, Any]:
    """What a capture says of its session, as a recording would have it: it started with its first exchange
    (not when it was imported), and the bot is where the channel's activities went (a HAR's first inbound
    POST's URL)."""
    resolved = sorted((traffic.resolve(r) for r in records), key=lambda r: r.started)
    started = dt.datetime.fromtimestamp(resolved[0].started, dt.UTC).isoformat(timespec="milliseconds")
    fields: dict[str, Any] = {"started_at": started.replace("+00:00", "Z")}
    bot_url = next((r.url for r in resolved if r.listener == "reverse"), None)
    if bot_url:
        fields["bot_url"] = bot_url
    return fields


def _ordered_after(earlier: list[traffic.Captured], records: list[traffic.Captured]) -> list[traffic.Captured]:
    """botproxy's own event numbers of a further file continue after those of the files before it."""
    base = max((max(r.order[0] or 0, r.order[1] or 0) for r in earlier), default=0)
    for r in records:
        if r.order[0] is not None:
            r.order = (r.order[0] + base, r.order[1] + base if r.order[1] is not None else None)
            r.messages = [(at, c, m, e + base if e is not None else None) for at, c, m, e in r.messages]
    return records


def write_session(
    db_path: str, name: str, events: list[Event], unknown_status: AbstractSet[int] = frozenset(), **fields: Any
) -> dict[str, Any]:
    """Run the events through a recorder with the live checks and write the session in one transaction.

    `unknown_status`: exchange seqs whose inbound activity's HTTP status the source did not know."""
    from ..checks import Engine, LiveChecks  # the checks read what recording produces, never the reverse

    db = store.open_db(db_path, create=True)
    try:
        row = session_row(name, {**fields, "source": "import"})
        with db.conn:  # one transaction: the session row, every exchange, activity and finding
            session_id = store.insert_session(db, row)
            checks = LiveChecks(Engine(), session_id)
            recorder = SessionRecorder(session_id, Redactor(), [checks])
            rows: list[Row] = []
            for event in events:
                rows += recorder.handle(event)
            rows += recorder.finish()
            for table, item in rows:
                if table == "activities" and item["direction"] == "to_bot" and item["exchange_seq"] in unknown_status:
                    item["status"] = None
            # Text SQLite cannot take is escaped first, as `store_rows` would do row by row: a batch this large
            # must not go row by row for one odd row. Then stored as recording stores rows; all or nothing.
            odd = store.ODD_TEXT_TABLES
            escaped = ((t, store.storable(r) or r if t in odd else r) for t, r in rows)
            stored = store.store_rows(db, store.grouped(escaped))
            if stored.lost:
                raise StoreError(f"cannot import into {db_path}: {store.lost_text(stored.lost)}; nothing was imported")
            store.set_session_fields(db, session_id, {"ended_at": utc_now(), "error_count": recorder.errors})
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot write to {db_path}: {exc}") from exc
    finally:
        db.conn.close()
    from ..record.session import summarize

    return summarize(session_id, name, db_path, recorder, checks)
