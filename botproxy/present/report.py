"""HTML reports: a session alone (its transcript, turn by turn, with findings) and a replay run (the
recorded and replayed transcripts side by side, with the differences and new findings).

A report is one self-contained file a reviewer opens in a browser: CSS and the small script that
drives the filter are inline, nothing is fetched, and a Content-Security-Policy says so to the
browser too. Every value that came from traffic is escaped by Jinja's autoescape (no template marks
data safe); the policy allows only our own script, by its hash, so even a slip in escaping could not
run an injected handler.

This module turns rows into plain view dicts (`activity_view`, `session_view`, `replay_view`) and
the templates only lay them out; that keeps the templates dumb and large reports fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import difflib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlite_utils
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .. import __version__, store
from ..checks.registry import RULES
from ..errors import OutputError, StoreError
from ..model import SEVERITIES
from ..replay.diff import ABSENT, noise_label
from ..turns import TurnGroups, turn_label
from ..wire import streams
from . import waterfall
from .console import activity_excerpt, excerpt
from .visible import visible

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"
# Above this many activities a report collapses the turns that need no attention and leaves out the
# raw JSON of activities without findings, so a 10,000-activity session stays a few MB and opens fast.
LARGE = 1000
TEXT_LIMIT = 4000  # characters of one text shown in a bubble
VALUE_LIMIT = 600  # characters of a JSON value shown in a difference or a system line
CARD_ITEMS_LIMIT = 60  # elements of one card shown


# -- the Jinja environment -----------------------------------------------------------------------


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("botproxy.present", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
    )
    env.filters["pretty"] = pretty_json
    return env


def _shown(value: Any) -> Any:
    """Every value a template prints: text from traffic gets its bidi controls made visible (our own
    Markup, the CSS and script, is not traffic)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


@functools.cache
def _assets() -> tuple[Markup, Markup, str]:
    """Our own CSS and script (static files, not data), and the CSP hash that lets only that script run."""
    env = environment()
    assert env.loader is not None
    css = env.loader.get_source(env, "report.css")[0]
    script = env.loader.get_source(env, "report.js")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return Markup(css), Markup(script), f"'sha256-{digest}'"


def pretty_json(value: Any, limit: int | None = None) -> str:
    """JSON for people: indented, non-ASCII kept. A plain str, so autoescape escapes it."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def compact_json(value: Any, limit: int = VALUE_LIMIT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clock(at: float | None) -> str:
    """UTC wall-clock time of an observation, to the millisecond."""
    if at is None:
        return ""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _write(template: str, context: dict[str, Any], out_path: str | os.PathLike[str]) -> Path:
    """Render into a temporary file beside the target, then move it into place (no half-written report)."""
    out = Path(out_path)
    css, script, script_hash = _assets()
    context = {**context, "css": css, "script": script, "script_hash": script_hash, "version": __version__}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise OutputError(f"cannot write report {out}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            for chunk in environment().get_template(template).generate(context):
                fh.write(chunk)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write report {out}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def default_report_path(name: str, directory: str | os.PathLike[str] = REPORTS_DIR) -> Path:
    """`reports/<session name>.html`, the name made safe as a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "session"
    return Path(directory) / f"{safe}.html"


# -- rules: the explanation of a finding ---------------------------------------------------------


def rule_help(code: str | None) -> dict[str, str]:
    """What the registry says about a rule: {"explanation", "fix"} ({} for a code it does not know)."""
    rule = RULES.get(code or "")
    return {"explanation": rule.explanation, "fix": rule.fix} if rule is not None else {}


def finding_view(row: dict[str, Any]) -> dict[str, Any]:
    """A finding (a `findings` row or a finding dict of a replay) as the templates show it."""
    details = row.get("details")
    if isinstance(details, str):
        try:
            details = json.loads(details) if details else {}
        except ValueError:
            pass
    severity = str(row.get("severity") or "info")
    helped = rule_help(row.get("rule"))
    exchange = details.get("exchange_seq") if isinstance(details, dict) else None
    return {
        "rule": str(row.get("rule") or ""),
        "name": str(row.get("name") or ""),
        "severity": severity if severity in SEVERITIES else "info",
        "seq": row.get("seq"),
        "conversation_id": row.get("conversation_id"),
        "message": str(row.get("message") or ""),
        "explanation": helped.get("explanation", ""),
        "fix": helped.get("fix", ""),
        "explanation_parts": code_marks(helped.get("explanation", "")),
        "fix_parts": code_marks(helped.get("fix", "")),
        "details": pretty_json(details, 4000) if details else "",
        "exchange_seq": exchange if isinstance(exchange, int) else None,  # an exchange-level finding's exchange
        "bar": None,  # the exchange whose waterfall bar it points to, when the report draws one
        "noise": bool(row.get("noise")),  # a replay's finding the baseline had too: shown, not counted
    }


def code_marks(text: str) -> list[tuple[bool, str]]:
    """A rule's prose in pieces: (True, "replyToId") for each `code` mark, (False, text) around them. The
    template wraps the first kind in <code> and escapes both; no other markup is read. An unclosed
    backtick stays a backtick."""
    parts = text.split("`")
    if len(parts) % 2 == 0:
        parts[-2:] = ["`".join(parts[-2:])]
    return [(n % 2 == 1, part) for n, part in enumerate(parts) if part]


def severity_counts(findings: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(f["severity"] for f in findings)
    return {severity: counts.get(severity, 0) for severity in SEVERITIES}


def _rules_table(rules: Counter[tuple[str, str, str]], first: dict[str, int]) -> list[dict[str, Any]]:
    """One row per rule broken, worst severity first: severity, code, name, count, first activity."""
    ordered = sorted(rules.items(), key=lambda item: (SEVERITIES.index(item[0][2]), item[0][0]))
    return [{"rule": r, "name": n, "severity": s, "count": c, "first": first.get(r)} for (r, n, s), c in ordered]


def worst(findings: Iterable[dict[str, Any]]) -> str | None:
    present = {f["severity"] for f in findings}
    return next((s for s in SEVERITIES if s in present), None)


# -- one activity as a bubble --------------------------------------------------------------------

CARD_PREFIX = "application/vnd.microsoft.card."
RICH_CARDS = {
    "hero": "Hero card",
    "thumbnail": "Thumbnail card",
    "signin": "Sign-in card",
    "oauth": "OAuth card",
    "receipt": "Receipt card",
    "animation": "Animation card",
    "audio": "Audio card",
    "video": "Video card",
}
SYSTEM_KINDS = ("update", "delete", "invoke_response", "event")
CLIENT_LEG = ("from_client", "to_client")


def activity_view(activity: dict[str, Any], findings: list[dict[str, Any]] | None = None,
                  *, raw: bool = True, unanswered: bool | None = None) -> dict[str, Any]:
    """An activity (a `store.iter_activities` record, or a bare Activity JSON) as a bubble or system line.

    `unanswered`: whether its exchange never got an HTTP answer, when the caller knows; otherwise a
    missing status is taken for one (an imported transcript's inbound status is unknown, not failed)."""
    if "direction" not in activity and "body" not in activity:  # a bare Activity, as a replay may store it
        activity = _record_of_bare(activity)
    body: dict[str, Any] = activity["body"] if isinstance(activity.get("body"), dict) else {}
    route = activity.get("route") or ""
    kind_of = activity.get("type") or body.get("type") or ""
    direction = activity.get("direction") or "from_bot"
    status = activity.get("status")
    if route == "delete_activity":
        kind = "delete"
    elif route == "update_activity":
        kind = "update"
    elif kind_of == "invokeResponse" or route == "invoke_response":
        kind = "invoke_response"
    elif kind_of == "typing":
        kind = "typing"
    elif kind_of == "message" or (not kind_of and activity.get("text")):
        kind = "message"
    else:
        kind = "event"
    text = activity.get("text") if activity.get("text") is not None else body.get("text")
    view: dict[str, Any] = {
        "seq": activity.get("seq"),
        "side": _side(direction, body),
        "client": direction in CLIENT_LEG,  # the Direct Line client's view of the conversation
        "bot_side": None,  # for a client's view: the seq of the same activity on the bot's leg
        "kind": kind,
        "system": kind in SYSTEM_KINDS,
        "type": kind_of,
        "route": route,
        "status": "" if status is None else str(status),
        "failed": isinstance(status, int) and status >= 400,
        "time": clock(activity.get("observed_at")),
        "text": _clip(text) if isinstance(text, str) and kind == "message" else "",
        "line": _system_line(kind, activity, body) if kind in SYSTEM_KINDS else "",
        "from": _party(body.get("from")),
        "cards": [_card_view(a) for a in _list(body.get("attachments")) if isinstance(a, dict)]
        if kind in ("message", "event") else [],
        "actions": _actions(_dict(body.get("suggestedActions")).get("actions")) if kind == "message" else [],
        "findings": findings or [],
        "raw": pretty_json(body, 20000) if raw and body else "",
        "marks": [],
        "changed_paths": [],
        "hl": [],  # what a replay changed, for highlighting: "text", "actions", "card0", "card0.title", ...
        "text_parts": [],  # a changed text in pieces, ("same" | "del" | "ins", text) (`text_parts`)
        "moved": "",  # a reordered activity's recorded and replayed position
        "proactive": False,
        # For drawing a stream as one bubble (`stream_bubbles`): its stream facts and what the timeline shows.
        "stream_part": streams.stream_part(body) if direction == "from_bot" else None,
        "stream_text": text if isinstance(text, str) else "",
        "activity_id": activity.get("activity_id"),
        "observed_at": activity.get("observed_at"),
        "exchange_seq": activity.get("exchange_seq"),
        "stream": None,
    }
    if unanswered is not None:
        view["failed"] = view["failed"] or unanswered
    elif status is None and activity.get("direction") and route not in ("", "invoke_response", "expected_replies"):
        view["failed"] = True  # the exchange never got an HTTP answer
    return view


def stream_bubbles(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn's bot views with each stream drawn as one bubble where it began (`streams.groups`, as replay
    aligns them): the final's text and cards, the count of chunks, a small timeline of them, and every
    finding of every chunk. Each chunk keeps its anchor in the timeline, so links to it still land."""
    if not any(v["stream_part"] is not None for v in views):
        return views
    out = []
    for group in streams.groups([(v["stream_part"], v["activity_id"]) for v in views]):
        members = [views[i] for i in group]
        out.append(_stream_view(members) if members[0]["stream_part"] is not None else members[0])
    return out


STREAM_CHUNK_TEXT = 80  # characters of a chunk shown in the timeline


def _stream_view(members: list[dict[str, Any]]) -> dict[str, Any]:
    final = next((m for m in members if m["stream_part"].final), None)
    base = final or members[-1]
    start = next((m["observed_at"] for m in members if m["observed_at"] is not None), None)
    streamed = [m for m in members if m["stream_part"].stream_type == streams.STREAMING]
    view = dict(base)
    view.update(
        kind="stream",
        system=False,
        text=base["text"] if final is not None else _clip(streamed[-1]["stream_text"]) if streamed else "",
        findings=[f for m in members for f in m["findings"]],
        failed=any(m["failed"] for m in members),
        marks=list(dict.fromkeys(k for m in members for k in m["marks"])),
        changed_paths=[p for m in members for p in m["changed_paths"]],
        hl=[h for m in members for h in m["hl"]],
        moved=next((m["moved"] for m in members if m["moved"]), ""),
        proactive=any(m["proactive"] for m in members),
        stream={
            "chunks": len(members) - (final is not None),
            "final": final is not None,
            "timeline": [
                {
                    "seq": m["seq"],
                    "own": m is base,  # the bubble's own activity: its anchor is the bubble's
                    "kind": m["stream_part"].stream_type,
                    "number": m["stream_part"].sequence,
                    "at": f"+{m['observed_at'] - start:.1f}s" if start is not None and m["observed_at"] else "",
                    "text": excerpt(m["stream_text"], STREAM_CHUNK_TEXT),
                    "status": m["status"],
                    "failed": m["failed"],
                }
                for m in members
            ],
        },
    )
    return view


def _side(direction: str, body: dict[str, Any]) -> str:
    """user (left) or bot (right). What Direct Line delivers to a client is the bot's, or the user's echo."""
    if direction in ("to_bot", "from_client"):
        return "user"
    if direction == "to_client":
        return "user" if _dict(body.get("from")).get("role") == "user" else "bot"
    return "bot"


def _record_of_bare(body: dict[str, Any]) -> dict[str, Any]:
    role = _dict(body.get("from")).get("role")
    return {
        "seq": body.get("seq"),
        "direction": "to_bot" if role == "user" else "from_bot",
        "type": body.get("type"),
        "text": body.get("text"),
        "name": body.get("name"),
        "route": "",
        "status": None,
        "body": body,
    }


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _party(account: Any) -> str:
    if not isinstance(account, dict):
        return ""
    return str(account.get("name") or account.get("id") or "")


def _system_line(kind: str, activity: dict[str, Any], body: dict[str, Any]) -> str:
    target = activity.get("target_seq")
    target_text = f"#{target}" if target is not None else (activity.get("activity_id") or "?")
    if kind == "delete":
        return f"deleted {target_text}"
    if kind == "update":
        return f"updated {target_text} → {activity_excerpt(activity, 200) or '(no text)'}"
    if kind == "invoke_response":
        value: dict[str, Any] = body["value"] if isinstance(body.get("value"), dict) else {}
        return f"invoke response {value.get('status')}: {compact_json(value.get('body'))}"
    kind_of = activity.get("type") or body.get("type") or "activity"
    name = activity.get("name") or body.get("name")
    parts = [str(kind_of) + (f" {name}" if name else "")]
    if kind_of == "conversationUpdate":
        for key, label in (("membersAdded", "added"), ("membersRemoved", "removed")):
            members = [_party(m) for m in _list(body.get(key))]
            if members:
                parts.append(f"{label}: {', '.join(m for m in members if m)}")
    elif kind_of == "messageReaction":
        for key, label in (("reactionsAdded", "added"), ("reactionsRemoved", "removed")):
            reactions = [str(r.get("type")) for r in _list(body.get(key)) if isinstance(r, dict)]
            if reactions:
                parts.append(f"{label}: {', '.join(reactions)}")
    if "value" in body:
        parts.append(compact_json(body["value"], 300))
    if activity.get("text") or body.get("text"):
        parts.append(excerpt(activity.get("text") or body.get("text"), 200))
    return " · ".join(parts)


def _actions(actions: Any) -> list[dict[str, str]]:
    if not isinstance(actions, list):
        return []
    shown = []
    for action in actions[:CARD_ITEMS_LIMIT]:
        if not isinstance(action, dict):
            continue
        value = action.get("value", action.get("url", action.get("data")))
        shown.append({
            "type": str(action.get("type") or ""),
            "title": str(action.get("title") or action.get("text") or (value if isinstance(value, str) else "")
                         or "(untitled)"),
            "value": compact_json(value, 200) if value is not None else "",
        })
    return shown


def _card_view(attachment: dict[str, Any]) -> dict[str, Any]:
    content_type = str(attachment.get("contentType") or "")
    content = attachment.get("content")
    short = content_type[len(CARD_PREFIX):] if content_type.startswith(CARD_PREFIX) else ""
    card: dict[str, Any] = {
        "kind": content_type or "attachment",
        "title": "",
        "subtitle": "",
        "text": "",
        "items": [],
        "buttons": [],
        "raw": "",
    }
    if short == "adaptive" and isinstance(content, dict):
        card["kind"] = "Adaptive card"
        items: list[dict[str, str]] = []
        buttons: list[dict[str, str]] = []
        _walk_adaptive(content.get("body"), items, buttons, 0)
        buttons.extend(_actions(content.get("actions")))
        card["items"], card["buttons"] = items[:CARD_ITEMS_LIMIT], buttons[:CARD_ITEMS_LIMIT]
    elif short in RICH_CARDS and isinstance(content, dict):
        card["kind"] = RICH_CARDS[short]
        card["title"] = _string(content.get("title"))
        card["subtitle"] = _string(content.get("subtitle"))
        card["text"] = _clip(_string(content.get("text")), 2000)
        items = [{"kind": "image", "text": _string(i.get("alt") or i.get("url"))}
                 for i in _list(content.get("images")) if isinstance(i, dict)]
        items += [{"kind": "media", "text": _string(m.get("url"))} for m in _list(content.get("media"))
                  if isinstance(m, dict)]
        items += [{"kind": "fact", "text": f"{_string(f.get('key'))}: {_string(f.get('value'))}"}
                  for f in _list(content.get("facts")) if isinstance(f, dict)]
        items += [{"kind": "text", "text": f"{_string(i.get('title'))} {_string(i.get('price'))}".strip()}
                  for i in _list(content.get("items")) if isinstance(i, dict)]
        if content.get("total"):
            items.append({"kind": "fact", "text": f"Total: {_string(content.get('total'))}"})
        card["items"] = items[:CARD_ITEMS_LIMIT]
        card["buttons"] = _actions(content.get("buttons"))
    else:
        card["title"] = _string(attachment.get("name"))
        if attachment.get("contentUrl"):
            card["items"] = [{"kind": "link", "text": _string(attachment.get("contentUrl"))}]
        if content is not None:
            card["raw"] = pretty_json(content, 2000)
    return card


def _walk_adaptive(elements: Any, items: list[dict[str, str]], buttons: list[dict[str, str]], depth: int) -> None:
    """Adaptive Card body elements, flattened into labelled lines (text, facts, inputs) and buttons."""
    if not isinstance(elements, list) or depth > 8:
        return
    for element in elements:
        if len(items) >= CARD_ITEMS_LIMIT or not isinstance(element, dict):
            continue
        kind = str(element.get("type") or "")
        if kind == "TextBlock":
            heading = element.get("weight") == "bolder" or element.get("size") in ("large", "extraLarge")
            items.append({"kind": "heading" if heading else "text", "text": _clip(_string(element.get("text")), 2000)})
        elif kind == "RichTextBlock":
            runs = [_string(r.get("text") if isinstance(r, dict) else r) for r in _list(element.get("inlines"))]
            items.append({"kind": "text", "text": "".join(runs)})
        elif kind == "Image":
            items.append({"kind": "image", "text": _string(element.get("altText") or element.get("url"))})
        elif kind == "ImageSet":
            _walk_adaptive([dict(i, type="Image") for i in _list(element.get("images")) if isinstance(i, dict)],
                           items, buttons, depth + 1)
        elif kind == "FactSet":
            items += [{"kind": "fact", "text": f"{_string(f.get('title'))}: {_string(f.get('value'))}"}
                      for f in _list(element.get("facts")) if isinstance(f, dict)]
        elif kind.startswith("Input."):
            label = element.get("label") or element.get("placeholder") or element.get("title") or ""
            choices = [_string(c.get("title")) for c in _list(element.get("choices")) if isinstance(c, dict)]
            text = f"{kind[6:]} {_string(element.get('id'))}: {_string(label)}".strip()
            items.append({"kind": "input", "text": text + (f" [{', '.join(choices)}]" if choices else "")})
        elif kind in ("Container", "Column"):
            _walk_adaptive(element.get("items"), items, buttons, depth + 1)
        elif kind == "ColumnSet":
            for column in _list(element.get("columns")):
                if isinstance(column, dict):
                    _walk_adaptive(column.get("items"), items, buttons, depth + 1)
        elif kind == "Table":
            for row in _list(element.get("rows")):
                for cell in _list(row.get("cells")) if isinstance(row, dict) else []:
                    if isinstance(cell, dict):
                        _walk_adaptive(cell.get("items"), items, buttons, depth + 1)
        elif kind == "ActionSet":
            buttons.extend(_actions(element.get("actions")))
        elif kind:
            items.append({"kind": "other", "text": f"[{kind}]"})


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else compact_json(value, 300)


# -- a session ------------------------------------------------------------------------------------


def session_findings(db: sqlite_utils.Database, session_id: int,
                     check_config: Any = None) -> tuple[list[dict[str, Any]], str]:
    """The session's findings as stored; when none are stored (a session recorded before the checks ran
    live, or imported), the checks run now over the stored traffic, in memory: a report never writes
    to the database. Returns the findings and where they came from: "stored", "checked" or "unchecked"."""
    rows = [finding_view(dict(r)) for r in db.query(
        "select * from findings where session_id = ? order by rowid", [session_id])]
    if rows:
        return rows, "stored"
    try:
        from ..checks import check_session

        return [finding_view(f.to_dict()) for f in check_session(db, session_id, check_config)], "checked"
    except Exception:  # a report without findings is still a transcript; say so instead of failing
        log.warning("could not run the checks over session %s", session_id, exc_info=True)
        return [], "unchecked"


def session_view(db: sqlite_utils.Database, session: dict[str, Any], check_config: Any = None) -> dict[str, Any]:
    """Conversations in order of first appearance; in each, turns (the inbound activity and what the bot
    did because of it) and proactive activities, each activity with its findings."""
    activities = list(store.iter_activities(db, session["id"]))
    large = len(activities) > LARGE
    findings, findings_source = session_findings(db, session["id"], check_config)
    by_seq: dict[int, list[dict[str, Any]]] = {}
    loose: list[dict[str, Any]] = []  # findings about an exchange that carried no activity
    known = {a["seq"] for a in activities}
    for finding in findings:
        if finding["seq"] in known:
            by_seq.setdefault(finding["seq"], []).append(finding)
        else:
            loose.append(finding)

    conversations: dict[str | None, dict[str, Any]] = {}
    groups = TurnGroups(activities)
    # Every inbound activity opens a turn; made first, so a reply observed before its inbound one still joins it.
    turns = {seq: _turn(seq, number=groups.numbers.get(seq), conversation_id=conversation)
             for seq, conversation in groups.inbound.items()}
    # Exchanges that never got an HTTP answer (or broke off): their activities are failed calls. A
    # missing activity status alone is not one: an imported transcript does not know the status.
    sql = "select seq from exchanges where session_id = ? and (closed is null or error is not null)"
    unanswered = {r["seq"] for r in db.query(sql, [session["id"]])}
    bot_side: dict[str, int] = {}  # activity id -> seq on the bot's leg, to link a client's view to it
    bot_turn: dict[str, int] = {}  # activity id -> the turn it belongs to on the bot's leg
    for a in activities:
        if a["direction"] in ("to_bot", "from_bot") and a["activity_id"]:
            bot_side.setdefault(a["activity_id"], a["seq"])
            turn_of = groups.turn_of(a)
            if turn_of is not None:
                bot_turn.setdefault(a["activity_id"], turn_of)
    for activity in activities:
        seq = activity["seq"]
        view = activity_view(activity, by_seq.get(seq), raw=not large or seq in by_seq,
                             unanswered=activity["exchange_seq"] in unanswered)
        client_turn = turns.get(bot_turn.get(activity["activity_id"] or "", -1)) if view["client"] else None
        home = groups.home(activity)
        if home != activity["conversation_id"] and not view["client"]:
            view["elsewhere"] = activity["conversation_id"]
        if activity.get("turn_ambiguous"):
            view["ambiguous"] = True
        conversation = conversations.setdefault(
            home, {"id": home or "(none)", "turns": [], "activities": 0, "findings": [], "turn_count": 0},
        )
        conversation["activities"] += 1
        if activity["direction"] == "to_bot":
            turns[seq]["inbound"] = view
            conversation["turns"].append(turns[seq])
        elif view["client"]:
            view["bot_side"] = bot_side.get(activity["activity_id"] or "")
            if client_turn is not None:  # beside the bot's turn it belongs to
                client_turn["client_views"].append(view)
                continue
            # a client's view of nothing the bot's leg saw: runs of it go together, between the turns
            last = conversation["turns"][-1] if conversation["turns"] else None
            if last is not None and last["client"]:
                last["replies"].append(view)
            else:
                conversation["turns"].append(_turn(seq, replies=[view], client=True))
        elif activity["turn_seq"] in turns:
            turns[activity["turn_seq"]]["replies"].append(view)
        else:
            conversation["turns"].append(_turn(seq, replies=[view], proactive=True))
    for finding in loose:
        if finding["conversation_id"] in conversations:
            conversations[finding["conversation_id"]]["findings"].append(finding)
    session_loose = [f for f in loose if f["conversation_id"] not in conversations]

    drawn = _draw_time(db, session["id"], conversations, large, activities)
    for finding in loose:
        bar = drawn.get(finding["exchange_seq"])
        if bar is not None:
            finding["bar"] = bar["seq"]
            bar["severity"] = worst([finding, {"severity": bar["severity"] or finding["severity"]}])

    turn_count = 0
    for conversation in conversations.values():
        conversation["turn_count"] = sum(1 for t in conversation["turns"] if not t["proactive"] and not t["client"])
        conversation["proactive_count"] = sum(1 for t in conversation["turns"] if t["proactive"])
        turn_count += conversation["turn_count"]
        flagged_in_conversation = bool(conversation["findings"])
        for turn in conversation["turns"]:
            views = ([turn["inbound"]] if turn["inbound"] else []) + turn["replies"]
            every = views + turn["client_views"]
            turn_findings = [f for v in every for f in v["findings"]]
            turn["views"] = views
            turn["severity"] = worst(turn_findings)
            turn["finding_count"] = len(turn_findings)
            turn["failed"] = any(v["failed"] for v in every)
            turn["flagged"] = bool(turn_findings) or turn["failed"]
            turn["open"] = turn["flagged"] or not large
            turn["title"] = _turn_title(turn)
            flagged_in_conversation |= turn["flagged"]
        conversation["flagged"] = flagged_in_conversation
        conversation["open"] = flagged_in_conversation or not large

    rules = Counter((f["rule"], f["name"], f["severity"]) for f in findings)
    first_seq: dict[str, int] = {}
    for f in findings:
        if f["seq"] in known:
            first_seq.setdefault(f["rule"], f["seq"])
    summary = {
        "activities": len(activities),
        "conversations": len(conversations),
        "turns": turn_count,
        "proactive": sum(1 for c in conversations.values() for t in c["turns"] if t["proactive"]),
        "client": sum(len(t["replies"]) if t["client"] else len(t["client_views"])
                      for c in conversations.values() for t in c["turns"]),
        "failed": sum(1 for c in conversations.values() for t in c["turns"] for v in t["views"] + t["client_views"]
                      if v["failed"]),
        "findings": len(findings),
        "severity": severity_counts(findings),
        "recorder_errors": session.get("error_count") or 0,
        "flagged_turns": sum(1 for c in conversations.values() for t in c["turns"] if t["flagged"]),
    }
    return {
        "session": session,
        "summary": summary,
        "rules": _rules_table(rules, first_seq),
        "conversations": list(conversations.values()),
        "loose_findings": session_loose,
        "recorder_errors": _recorder_errors(db, session["id"], drawn, known),
        "findings_source": findings_source,
        "large": large,
        "generated_at": _now(),
    }


def _turn(seq: int, *, number: int | None = None, conversation_id: Any = None, replies: list[Any] | None = None,
          proactive: bool = False, client: bool = False) -> dict[str, Any]:
    """A turn of a session report: its inbound activity (set later), the bot's replies, the Direct Line
    client's view of it, and the waterfall of its exchanges."""
    return {"seq": seq, "number": number, "inbound": None, "replies": replies or [], "client_views": [],
            "proactive": proactive, "client": client, "conversation_id": conversation_id, "waterfall": None}


def _draw_time(db: sqlite_utils.Database, session_id: int, conversations: dict[Any, dict[str, Any]], large: bool,
               activities: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each turn's waterfall (`botproxy.present.waterfall`), its findings pointed at their exchange's bar; in a large
    session only for the turns that need attention. Streams are made one bubble here too (their chunks'
    exchanges are still drawn one by one). Returns the bars drawn, by exchange seq."""
    exchanges = waterfall.session_exchanges(db, session_id)
    first_activity: dict[int, dict[str, Any]] = {}
    for a in activities:
        first_activity.setdefault(a["exchange_seq"], a)
    labels = {seq: _bar_label(first_activity.get(seq), e) for seq, e in exchanges.items()}
    targets = {seq: a["seq"] for seq, a in first_activity.items()}
    exchange_of = {a["seq"]: a["exchange_seq"] for a in activities}
    every_turn = [t for c in conversations.values() for t in c["turns"]]
    owned: dict[int, set[int]] = {}
    for n, turn in enumerate(every_turn):
        views = ([turn["inbound"]] if turn["inbound"] else []) + turn["replies"]
        owned[n] = {v["exchange_seq"] for v in views if v["exchange_seq"] is not None}
        turn["replies"] = stream_bubbles(turn["replies"])
    inbound = [(n, t["inbound"]["exchange_seq"]) for n, t in enumerate(every_turn) if t["inbound"]]
    for n, extra in waterfall.unowned_calls(exchanges, set().union(*owned.values()), inbound).items():
        owned[n].update(extra)
    drawn: dict[int, dict[str, Any]] = {}
    for n, turn in enumerate(every_turn):
        views = ([turn["inbound"]] if turn["inbound"] else []) + turn["replies"] + turn["client_views"]
        findings = [f for v in views for f in v["findings"]]
        if turn["client"] or (large and not findings and not any(v["failed"] for v in views)):
            continue  # a client's view of its own is no turn of the bot's: nothing of the bot's to draw
        drawing = waterfall.waterfall([exchanges[s] for s in owned[n] if s in exchanges], labels, targets)
        if drawing is None:
            continue
        bars = {b["seq"]: b for b in drawing["bars"]}
        for f in findings:
            seq = f["exchange_seq"] if f["exchange_seq"] in bars else exchange_of.get(f["seq"])
            if seq in bars:
                f["bar"] = seq
                bars[seq]["severity"] = worst([f, {"severity": bars[seq]["severity"] or f["severity"]}])
        turn["waterfall"] = drawing
        drawn.update(bars)
    return drawn


def _bar_label(activity: dict[str, Any] | None, exchange: dict[str, Any]) -> str:
    arrow = "→" if exchange["leg"] == "inbound" else "←"
    route = str(exchange["route"] or exchange["method"] or "")
    if activity is None:
        return f"{arrow} {route}"
    what = activity_excerpt(activity, 40) or activity.get("type") or ""
    return f"{arrow} {route} {what}".rstrip()


RECORDER_ERRORS_SHOWN = 500


def _recorder_errors(db: sqlite_utils.Database, session_id: int, drawn: dict[int, Any],
                     known: set[int]) -> dict[str, Any]:
    """What went wrong inside the recorder (the `errors` table): when, at which stage, about which exchange
    (linked to its bar, else to the activity it carried), and what."""
    total = db.execute("select count(*) from errors where session_id = ?", [session_id]).fetchone()[0]
    rows = db.query("select at, stage, message, exchange_seq from errors where session_id = ? order by at, rowid"
                    " limit ?", [session_id, RECORDER_ERRORS_SHOWN])
    carried = {}
    if total:
        sql = "select exchange_seq, min(seq) as seq from activities where session_id = ? group by exchange_seq"
        carried = {r["exchange_seq"]: r["seq"] for r in db.query(sql, [session_id])}
    shown = []
    for row in rows:
        exchange = row["exchange_seq"]
        link = f"x{exchange}" if exchange in drawn else f"a{carried[exchange]}" if carried.get(exchange) in known \
            else ""
        shown.append({"time": clock(row["at"]), "stage": str(row["stage"] or ""), "message": str(row["message"] or ""),
                      "exchange": exchange, "link": link})
    return {"rows": shown, "more": max(total - len(shown), 0)}


def _turn_title(turn: dict[str, Any]) -> str:
    if turn["client"]:
        count = len(turn["replies"])
        return f"Direct Line client's view · {count} activit{'y' if count == 1 else 'ies'}"
    if turn["proactive"]:
        reply = turn["replies"][0]
        return f"proactive #{reply['seq']}"
    inbound = turn["inbound"]
    label = (f"“{excerpt(inbound['text'], 60)}”" if inbound["text"] else inbound["line"] or inbound["type"]) \
        if inbound else "(inbound not recorded)"
    replies = len(turn["replies"])
    elsewhere = sorted({v["elsewhere"] for v in turn["replies"] if v.get("elsewhere")})
    ambiguous = sum(1 for v in turn["replies"] if v.get("ambiguous"))
    title = f"{turn_label(turn['number'], turn['seq'])} · {excerpt(label, 80)} · {replies} " \
        f"repl{'y' if replies == 1 else 'ies'}"
    if elsewhere:
        title += f" · in created conversation{'s' if len(elsewhere) > 1 else ''} {', '.join(elsewhere)}"
    if ambiguous:
        title += f" · {ambiguous} linked by wire order only (several turns were open)"
    return title


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_session(db: sqlite_utils.Database, session: dict[str, Any], out_path: str | os.PathLike[str],
                   *, check_config: Any = None) -> Path:
    """Write the HTML report of one recorded session (a `sessions` row, e.g. from `store.resolve_session`).
    `check_config` (a `checks.CheckConfig`) is used only when the session has no stored findings."""
    view = session_view(db, session, check_config)
    return _write("session.html.j2", view, out_path)


# -- a replay run ----------------------------------------------------------------------------------
#
# Rows as botproxy.replay.driver stores them: `recorded`/`replayed` are lists of compact activities (seq, route,
# type, text, status, proactive, body; the inbound activity is not among them), `differences` are
# botproxy.replay.diff's (kind, path relative to the activity, recorded_index, replayed_index), `noise` the
# differences the baseline discounted, `new_findings` check findings (with a `noise` flag) at candidate seqs.

_LEADING_INDEX = re.compile(r"""^\s*(?:root)?\s*(?:\[(\d+)\]|[./]?(\d+)(?=[./\[]|$))""")
TURN_STATUSES = ("same", "changed", "error")


def difference_index(difference: dict[str, Any], side: str) -> int | None:
    """Which activity of a turn a difference is about on one side: `<side>_index`, else the position in
    its path (`[2]`, as diff.py writes for missing, extra and reordered activities)."""
    index = difference.get(f"{side}_index")
    if isinstance(index, int):
        return index
    if f"{side}_index" in difference:  # present and null: not on this side
        return None
    match = _LEADING_INDEX.match(str(difference.get("path") or ""))
    return int(match.group(1) or match.group(2)) if match else None


def _json_value(value: Any, default: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value) if value else default
        except ValueError:
            return default
    return default if value is None else value


def _json_list(value: Any) -> list[Any]:
    value = _json_value(value, [])
    return value if isinstance(value, list) else [value]


def _path_labels(entries: Iterable[Any]) -> list[str]:
    """Paths stored as strings, or as differences (`{kind, path}`: a structural kind is named)."""
    labels = []
    for entry in entries:
        if isinstance(entry, dict):
            kind, path = entry.get("kind"), str(entry.get("path") or "")
            labels.append(path if kind in (None, "changed") else f"{kind} {path}")
        else:
            labels.append(str(entry))
    return labels


_TEXT_PATH = re.compile(r"""^(?:root)?\[['"]text['"]\]$|^\.?text$""")
_CARD_PATH = re.compile(r"""^root\['attachments'\]\[(\d+)\](?:\['content'\]\['(\w+)'\])?""")


_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
TEXT_DIFF_LIMIT = 4000  # characters of each side compared piece by piece (beyond: the whole text is marked)


def text_parts(recorded: str, replayed: str) -> list[tuple[str, str]]:
    """What changed between two texts, as pieces ("same" | "del" | "ins", text) in reading order: words, runs
    of spaces and single punctuation marks aligned by difflib, and a short replaced run aligned again
    character by character ("weather?" → "weather?!" is ("same", "weather?"), ("ins", "!"))."""
    if len(recorded) > TEXT_DIFF_LIMIT or len(replayed) > TEXT_DIFF_LIMIT:
        return [("del", recorded), ("ins", replayed)]
    a, b = _TOKEN.findall(recorded), _TOKEN.findall(replayed)
    parts: list[tuple[str, str]] = []
    for tag, a0, a1, b0, b1 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old, new = "".join(a[a0:a1]), "".join(b[b0:b1])
        if tag == "equal":
            parts.append(("same", old))
        elif tag == "replace" and len(old) + len(new) <= 80 and difflib.SequenceMatcher(None, old, new).ratio() >= .5:
            parts += _char_parts(old, new)
        else:
            parts += [("del", old), ("ins", new)]
    merged: list[tuple[str, str]] = []
    for op, text in parts:
        if not text:
            continue
        if merged and merged[-1][0] == op:
            merged[-1] = (op, merged[-1][1] + text)
        else:
            merged.append((op, text))
    return merged


def _char_parts(old: str, new: str) -> list[tuple[str, str]]:
    parts = []
    for tag, a0, a1, b0, b1 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            parts.append(("same", old[a0:a1]))
        else:
            parts += [("del", old[a0:a1]), ("ins", new[b0:b1])]
    return parts


def side_parts(parts: list[tuple[str, str]], side: str) -> list[tuple[str, str]]:
    """The pieces one side shows: the recorded text with its deletions, the replayed one with its insertions."""
    dropped = "ins" if side == "recorded" else "del"
    return [(op, text) for op, text in parts if op != dropped]


def _position(index: int | None) -> str:
    return "?" if index is None else str(index + 1)


def _mark(views: list[dict[str, Any]], index: int | None, kind: str, path: str) -> None:
    """Mark the activity a difference is about; for a changed field, also what in its bubble to highlight."""
    if index is None or not 0 <= index < len(views):
        return
    view = views[index]
    if kind not in view["marks"]:
        view["marks"].append(kind)
    if kind != "changed" or not path:
        return
    view["changed_paths"].append(path)
    card = _CARD_PATH.match(path)
    if _TEXT_PATH.match(path):
        view["hl"].append("text")
    elif path.startswith("root['suggestedActions']"):
        view["hl"].append("actions")
    elif card:
        view["hl"].append(f"card{card.group(1)}")
        if card.group(2):
            view["hl"].append(f"card{card.group(1)}.{card.group(2)}")


def turn_view(row: dict[str, Any], inbound: dict[str, Any] | None, large: bool) -> dict[str, Any]:
    """One `replay_turns` row: the inbound activity, then recorded and replayed activities side by side,
    differences marked on the bubbles and listed with their paths, new findings at their activity."""
    status = str(row.get("status") or "error")
    status = status if status in TURN_STATUSES else "error"
    raw = not large or status != "same"
    recorded = [activity_view(a, raw=raw) for a in _json_list(row.get("recorded")) if isinstance(a, dict)]
    replayed = [activity_view(a, raw=raw) for a in _json_list(row.get("replayed")) if isinstance(a, dict)]
    for view in recorded + replayed:
        view["proactive"] = False
    for source, views in (("recorded", recorded), ("replayed", replayed)):
        for activity, view in zip((a for a in _json_list(row.get(source)) if isinstance(a, dict)), views,
                                  strict=True):
            view["proactive"] = bool(activity.get("proactive"))
    # Streams as one bubble each, at the positions replay compared them (diff.collapse_streams).
    recorded, replayed = stream_bubbles(recorded), stream_bubbles(replayed)
    findings = [finding_view(f) for f in _json_list(row.get("new_findings")) if isinstance(f, dict)]
    unplaced = []
    by_seq = {v["seq"]: v for v in replayed if v["seq"] is not None}
    by_seq.update({c["seq"]: v for v in replayed if v["stream"] for c in v["stream"]["timeline"]})
    for finding in findings:
        if finding["seq"] in by_seq:
            by_seq[finding["seq"]]["findings"].append(finding)
        else:
            unplaced.append(finding)
    differences = []
    for difference in _json_list(row.get("differences")):
        if not isinstance(difference, dict):
            continue
        kind, path = str(difference.get("kind") or "changed"), str(difference.get("path") or "")
        old, new = difference.get("recorded"), difference.get("replayed")
        at, to = difference_index(difference, "recorded"), difference_index(difference, "replayed")
        parts = text_parts(old, new) if kind == "changed" and isinstance(old, str) and isinstance(new, str) \
            and ABSENT not in (old, new) else []
        moved = f"moved from position {_position(at)} to {_position(to)}" if kind == "reordered" else ""
        differences.append({
            "kind": kind,
            "path": path,
            "recorded": compact_json(old) if old is not None else "",
            "replayed": compact_json(new) if new is not None else "",
            "recorded_parts": side_parts(parts, "recorded"),
            "replayed_parts": side_parts(parts, "replayed"),
            "moved": moved,
        })
        _mark(recorded, at, kind, path)
        _mark(replayed, to, kind, path)
        if moved:
            for views, index in ((recorded, at), (replayed, to)):
                if index is not None and 0 <= index < len(views):
                    views[index]["moved"] = moved
        if parts and _TEXT_PATH.match(path) and at is not None and to is not None \
                and 0 <= at < len(recorded) and 0 <= to < len(replayed):
            # the bubbles show the change too, in their own (clipped) texts
            shown = text_parts(recorded[at]["text"], replayed[to]["text"])
            recorded[at]["text_parts"] = side_parts(shown, "recorded")
            replayed[to]["text_parts"] = side_parts(shown, "replayed")
    if inbound is not None:
        inbound_view = activity_view(inbound, raw=raw)
    elif row.get("inbound_text"):
        inbound_view = activity_view({"seq": row.get("inbound_seq"), "direction": "to_bot", "type": "message",
                                      "text": row.get("inbound_text")}, raw=False)
    else:
        inbound_view = None
    counted = [f for f in findings if not f["noise"]]
    label = row.get("inbound_text") or (inbound_view["line"] if inbound_view else "")
    return {
        "idx": row.get("idx"),
        "inbound_seq": row.get("inbound_seq"),
        "title": turn_label(row.get("idx"), row.get("inbound_seq")) + (f" · “{excerpt(label, 60)}”" if label else ""),
        "status": status,
        "regressed": bool(row.get("regressed")),
        "inbound": inbound_view,
        "recorded": recorded,
        "replayed": replayed,
        "differences": differences,
        "noise": _path_labels(_json_list(row.get("noise"))),
        "findings": findings,
        "counted_findings": counted,
        "unplaced_findings": unplaced,
        "severity": worst(counted),
        "error": str(row.get("error") or ""),
        "flagged": status != "same" or bool(counted) or bool(row.get("regressed")),
        "open": status != "same" or bool(counted) or not large,
    }


def replay_view(db: sqlite_utils.Database, run_id: int) -> dict[str, Any]:
    if not db["replay_runs"].exists() or not db["replay_turns"].exists():
        raise StoreError(f"{store.db_path(db)} has no replay runs: run botproxy replay first")
    runs = list(db.query("select * from replay_runs where id = ?", [run_id]))
    if not runs:
        raise StoreError(f"no replay run {run_id} in {store.db_path(db)} (botproxy replay prints the run's number)")
    run = dict(runs[0])
    session_rows = list(db.query("select * from sessions where id = ?", [run.get("session_id")]))
    session = dict(session_rows[0]) if session_rows else {"id": run.get("session_id"), "name": "(deleted)"}
    rows = [dict(r) for r in db.query("select * from replay_turns where run_id = ? order by rowid", [run_id])]
    inbound = {
        a["seq"]: a
        for a in (store.activity_record(dict(r)) for r in db.query(
            "select * from activities where session_id = ? and direction = 'to_bot' order by seq", [session["id"]]))
    }
    activity_total = sum(len(_json_list(r.get("recorded"))) + len(_json_list(r.get("replayed"))) for r in rows)
    large = activity_total + len(rows) > LARGE

    conversations: dict[Any, dict[str, Any]] = {}

    def conversation(conversation_id: Any) -> dict[str, Any]:
        return conversations.setdefault(conversation_id, {
            "id": conversation_id or "(none)", "turns": [], "proactive": [], "counts": Counter(),
        })

    statuses: Counter[str] = Counter()
    findings: list[dict[str, Any]] = []
    noise_findings = regressed = noise = 0
    regressed_turns = []
    for n, row in enumerate(rows, 1):
        turn = turn_view(row, inbound.get(row.get("inbound_seq")), large)
        turn["anchor"] = f"t{n}"
        if turn["regressed"]:
            regressed_turns.append({"anchor": turn["anchor"], "title": turn["title"], "status": turn["status"],
                                    "conversation": row.get("conversation_id") or "(none)",
                                    "differences": len(turn["differences"]),
                                    "findings": len(turn["counted_findings"]), "error": turn["error"]})
        statuses[turn["status"]] += 1
        findings += turn["counted_findings"]
        noise_findings += len(turn["findings"]) - len(turn["counted_findings"])
        regressed += turn["regressed"]
        noise += len(turn["noise"])
        conversation(row.get("conversation_id"))["turns"].append(turn)
        conversation(row.get("conversation_id"))["counts"][turn["status"]] += 1
    stored = _json_value(run.get("summary"), {})
    stored = stored if isinstance(stored, dict) else {}
    for entry in _list(stored.get("proactive")):
        if not isinstance(entry, dict):
            continue
        conversation(entry.get("conversation_id"))["proactive"].append({
            "status": str(entry.get("status") or ""),
            "after_index": entry.get("after_index"),
            "recorded": [activity_view(a) for a in _list(entry.get("recorded")) if isinstance(a, dict)],
            "replayed": [activity_view(a) for a in _list(entry.get("replayed")) if isinstance(a, dict)],
        })
    for c in conversations.values():
        c["flagged"] = any(t["flagged"] for t in c["turns"]) or bool(c["proactive"])
        c["open"] = c["flagged"] or not large
    summary = {
        "turns": len(rows),
        "same": statuses["same"],
        "changed": statuses["changed"],
        "error": statuses["error"],
        "regressed": regressed,
        "conversations": len(conversations),
        "findings": len(findings),
        "noise_findings": noise_findings,
        "noise": noise,
        "severity": severity_counts(findings),
    }
    shown = set(summary) | {"proactive", "checks", "new_findings", "differences"}
    rules = Counter((f["rule"], f["name"], f["severity"]) for f in findings)
    options = _json_value(run.get("options"), {})
    return {
        "run": run,
        "session": session,
        "summary": summary,
        "checks": stored.get("checks", True) is not False,
        "options": option_words(options) if isinstance(options, dict) else [],
        "extra_summary": option_words({k: v for k, v in stored.items() if k not in shown}),
        "regressed_turns": regressed_turns,
        "noise_paths": [noise_label(p) for p in _path_labels(_json_list(run.get("noise_paths")))],
        "ignore_paths": _path_labels(_json_list(run.get("ignore_paths"))),
        "rules": _rules_table(rules, {}),
        "conversations": list(conversations.values()),
        "large": large,
        "generated_at": _now(),
    }


# What a run's options and extra counts mean, for the report's header: words, and the unit of the value.
OPTION_WORDS: dict[str, tuple[str, str]] = {
    "quiet_ms": ("a turn ends after this long without a Connector call", "ms"),
    "cap_ms": ("longest wait for that quiet after the answer", "ms"),
    "timeout_s": ("time the bot has to answer a turn", "s"),
    "quiet_every_turn": ("waited for the quiet after every turn", ""),
    "connector_ok": ("the Connector stand-in answered every call with success", ""),
    "concurrency": ("conversations replayed at once", ""),
    "incomplete": ("turns the recording cannot be compared on (incomplete)", ""),
    "proactive_not_replayed": ("recorded proactive activities that did not happen again", ""),
    "proactive_unattached": ("replayed activities outside every recorded turn", ""),
    "differences": ("differences", ""),
    "new_findings": ("new findings", ""),
}


def option_words(options: dict[str, Any]) -> list[tuple[str, str]]:
    """(words, value) for each option or count stored with a run: the known keys in words with their unit,
    yes/no for flags; an unknown key with its underscores as spaces."""
    shown = []
    for key, value in options.items():
        words, unit = OPTION_WORDS.get(key, (str(key).replace("_", " "), ""))
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int | float) and unit:
            text = f"{value:g} {unit}"
        else:
            text = compact_json(value, 200)
        shown.append((words, text))
    return shown


def render_replay(db: sqlite_utils.Database, run_id: int, out_path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of one replay run (`replay_runs.id`): recorded and replayed side by side."""
    return _write("replay.html.j2", replay_view(db, run_id), out_path)
