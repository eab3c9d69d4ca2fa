"""Compare what a bot did in a recorded turn with what it did in a replay of that turn.

Pure functions over plain dicts: no HTTP, no SQLite. A turn's activities are aligned as sequences,
then each matched pair is compared field by field with deepdiff:

    changed    a field of a matched pair differs; `path` is deepdiff's, relative to the activity
               (``root['text']``, ``root['attachments'][0]['content']['title']``)
    missing    a recorded activity has no counterpart in the replay; `path` is its recorded position (``[2]``)
    extra      a replayed activity has no counterpart in the recording; `path` is its replayed position
    reordered  the same activity at another position; `path` is its recorded position

Alignment, in three passes: identical activities in order (difflib.SequenceMatcher over their content);
identical activities out of order (`reordered`); the rest in order by signature (route kind, type, text
or not, attachment content types), where a pair is `changed` and the leftovers are `missing`/`extra`.

Activities are compared as *views* (`comparable()` makes one from a stored activity): the JSON body
with the connector-assigned ids mapped into the recording's id space, every serviceUrl written as
``<serviceUrl>``, and two keys of our own: ``@route`` (which Connector call carried it) and, for updates
and deletes, ``@target`` (the id they changed). Paths in `Ignore` are removed from both sides first:
the volatile profile (`VOLATILE`, fields that differ on every run) and the user's paths. A path is
either a deepdiff path (``root['channelData']``, which also covers everything below it) or a regular
expression searched in each path (``\\['nonce'\\]``).

Ids the connector issued (a send's ResourceResponse id, a created conversation's id) are mapped
wherever they appear in a view, not only in `id` and `replyToId`: streaming agents copy the first
chunk's id into `entities[].streamId`, Teams bots keep a thread's conversation id in their cards.

Noise (Diffy's primary/secondary idea): what differs between the recording and a replay of the *same*
build (the baseline) is noise for that turn, *for the activity it differed in*: a noise key is the
path prefixed with the recorded activity's position in the turn (``[1]root['text']``), so a random
greeting in one activity does not hide a changed text in another. `noise_paths()` learns them;
`diff_turn(noise=...)` marks the candidate's differences at those keys (or below them) as noise, which
reports do not count. A key without the position (``root['text']``) stands for that path in every
activity of the turn.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import notpresent
from deepdiff.path import parse_path

from ..errors import UsageError
from ..wire import protocol as p
from ..wire import streams

CHANGED, MISSING, EXTRA, REORDERED = "changed", "missing", "extra", "reordered"
KINDS = (CHANGED, MISSING, EXTRA, REORDERED)
# Noise keys of the structural kinds: a baseline that lost, added or moved an activity in a turn makes
# those kinds noise for that turn.
STRUCTURAL = {MISSING: "<missing>", EXTRA: "<extra>", REORDERED: "<reordered>"}

# Fields that differ between any two runs of the same bot. Ids (`id`, `replyToId`, `@target`) are not
# here: `comparable()` maps them instead, so a reply to the wrong activity still shows. Account roles
# are the channel's annotation, not the bot's output: the SDK copies them from the inbound activity,
# and transcript writers (botproxy export, TranscriptLoggerMiddleware) add them where the wire had none.
VOLATILE: tuple[str, ...] = (
    "root['timestamp']", "root['localTimestamp']", "root['serviceUrl']",
    "root['from']['role']", "root['recipient']['role']",
)

ABSENT = "<absent>"  # the recorded/replayed value of a field that one side does not have
GENERATED = "<generated>"  # an id neither the channel nor the recording issued (e.g. the SDK's uuid1)
SERVICE_URL = "<serviceUrl>"
IGNORED = "<ignored>"  # stands in for an ignored list item, so the items after it keep their paths

_EXACT_PATH = re.compile(r"root(\[(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?\d+)\])*")
_ATTACHMENT_URL = re.compile(re.escape(SERVICE_URL) + r"/?v3/attachments/[^/\"?]+")


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str
    path: str
    recorded: Any = None
    replayed: Any = None
    recorded_index: int | None = None  # position of the activity in the recorded turn
    replayed_index: int | None = None
    noise: bool = False  # the baseline differed here too: reported, not counted

    @property
    def noise_key(self) -> str:
        """The path (or structural kind), prefixed with the recorded activity's position when there is one."""
        where = f"[{self.recorded_index}]" if self.recorded_index is not None else ""
        if self.kind == CHANGED:
            return where + self.path
        return STRUCTURAL[self.kind] + (where if self.kind != EXTRA else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "recorded_index": self.recorded_index,
            "replayed_index": self.replayed_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, noise: bool = False) -> Difference:
        return cls(
            data["kind"],
            data["path"],
            data.get("recorded"),
            data.get("replayed"),
            data.get("recorded_index"),
            data.get("replayed_index"),
            noise,
        )


# -- what to leave out ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ignore:
    """Paths removed from both sides before comparing: exact deepdiff paths and regexes."""

    exact: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()
    user: tuple[str, ...] = field(default=())  # as the user gave them, for the record
    # The exact paths as a tree of keys ({"timestamp": None, "a": {0: None}}; None ends a path), so
    # pruning touches only the parts of a value that lead to an ignored path.
    tree: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for path in self.exact:
            node = self.tree
            keys = parse_path(path)  # root['a'][0]["b'c"] -> ['a', 0, "b'c"], as deepdiff writes them
            for key in keys[:-1]:
                child = node.setdefault(key, {})
                if child is None:  # a shorter path already ignores everything below
                    break
                node = child
            else:
                if keys:
                    node[keys[-1]] = None

    def matches(self, path: str) -> bool:
        return path in self.exact or any(rx.search(path) for rx in self.patterns)


def parse_ignore(values: Iterable[str] = (), *, volatile: bool = True) -> Ignore:
    """An `Ignore` from user paths (``root['x']`` or a regex), on top of `VOLATILE` unless told not to."""
    exact = set(VOLATILE if volatile else ())
    patterns: list[re.Pattern[str]] = []
    user: list[str] = []
    for raw in values:
        value = raw.strip()
        if not value:
            continue
        user.append(value)
        if _EXACT_PATH.fullmatch(value):
            exact.add(value)
            continue
        try:
            patterns.append(re.compile(value))
        except re.error as exc:
            raise UsageError(
                f"ignore path {value!r} is neither a deepdiff path like root['channelData'] "
                f"nor a regular expression ({exc})"
            ) from None
    return Ignore(frozenset(exact), tuple(patterns), tuple(user))


DEFAULT_IGNORE = parse_ignore()


def prune(value: Any, ignore: Ignore, path: str = "root") -> Any:
    """A copy of `value` without the parts whose deepdiff path `ignore` matches (shared where untouched)."""
    if not ignore.patterns:
        return _prune_tree(value, ignore.tree) if ignore.tree else value
    return _prune_walk(value, ignore, path)


def _prune_tree(value: Any, tree: dict[Any, Any]) -> Any:
    if isinstance(value, dict):
        hit = [k for k in tree if k in value]
        if not hit:
            return value
        out = dict(value)
        for key in hit:
            if tree[key] is None:
                del out[key]
            else:
                out[key] = _prune_tree(value[key], tree[key])
        return out
    if isinstance(value, list):
        hit = [k for k in tree if isinstance(k, int) and -len(value) <= k < len(value)]
        if not hit:
            return value
        items = list(value)
        for key in hit:
            items[key] = IGNORED if tree[key] is None else _prune_tree(value[key], tree[key])
        return items
    return value


def _prune_walk(value: Any, ignore: Ignore, path: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = f"{path}[{key!r}]"
            if not ignore.matches(child):
                out[key] = _prune_walk(item, ignore, child)
        return out
    if isinstance(value, list):
        items = []
        for n, item in enumerate(value):
            child = f"{path}[{n}]"
            items.append(IGNORED if ignore.matches(child) else _prune_walk(item, ignore, child))
        return items
    return value


# -- views ------------------------------------------------------------------------------------------


def comparable(
    activity: Mapping[str, Any],
    *,
    canon_id: Callable[[str], str] | None = None,
    service_urls: Iterable[str] = (),
    issued: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The view of a stored activity record (`show --json` shape) that `diff_turn` compares.

    `canon_id` maps `id`, `replyToId` and `@target`; `issued` maps every other string value that is an
    id the connector issued (wherever the bot copied it) to what it stands for in the recording."""
    body = activity.get("body")
    view: dict[str, Any] = _rewrite_urls(body, service_urls) if isinstance(body, dict) else {}
    if issued:
        view = {k: v if k in ("id", "replyToId") else _map_values(v, issued) for k, v in view.items()}
    if canon_id is not None:
        for key in ("id", "replyToId"):
            if isinstance(view.get(key), str):
                view[key] = canon_id(view[key])
    route = activity.get("route")
    if route:
        view["@route"] = route
    if route in p.EDIT_ROUTES:
        target = activity.get("url_activity_id") or activity.get("activity_id")
        view["@target"] = canon_id(target) if canon_id is not None and isinstance(target, str) else target
    return view


def _map_values(value: Any, issued: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return issued.get(value, value)
    if isinstance(value, dict):
        return {k: _map_values(v, issued) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_values(v, issued) for v in value]
    return value


def _rewrite_urls(body: dict[str, Any], service_urls: Iterable[str]) -> dict[str, Any]:
    """A copy of `body` with every serviceUrl (and attachment URL under it) written the same way.

    Done on the JSON text: one C-speed encode and decode instead of a walk over every value."""
    text = json.dumps(body, ensure_ascii=False)
    if "://" in text:
        for base in sorted({u.rstrip("/") for u in service_urls if u}, key=len, reverse=True):
            if base in text:
                text = re.sub(re.escape(json.dumps(base)[1:-1]) + r"(?=[/\"?#])", SERVICE_URL, text)
        if SERVICE_URL in text:
            text = _ATTACHMENT_URL.sub(SERVICE_URL + "/v3/attachments/<id>", text)
    copy: dict[str, Any] = json.loads(text)
    return copy


def signature(view: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must agree for two activities to be the same reply, changed: kind of call, type, text or
    not, attachment content types."""
    attachments = view.get("attachments")
    kinds = tuple(a.get("contentType") for a in attachments if isinstance(a, dict)) if isinstance(
        attachments, list
    ) else ()
    return (*_weak(view), bool(view.get("text")), kinds)


def _weak(view: Mapping[str, Any]) -> tuple[Any, ...]:
    route = view.get("@route")
    return ("send" if route in p.SEND_ROUTES else route, view.get("type"))


def summary(view: Mapping[str, Any]) -> dict[str, Any]:
    """A few words about an activity, for `missing`/`extra`/`reordered` differences."""
    out = {"type": view.get("type"), "route": view.get("@route")}
    text = view.get("text")
    if isinstance(text, str) and text:
        out["text"] = text if len(text) <= 120 else text[:117] + "..."
    attachments = view.get("attachments")
    if isinstance(attachments, list) and attachments:
        out["attachments"] = [a.get("contentType") for a in attachments if isinstance(a, dict)]
    return {k: v for k, v in out.items() if v is not None}


# -- alignment and comparison ------------------------------------------------------------------------


Op = tuple[str, int | None, int | None]  # (kind, recorded index, replayed index)


def align(recorded: Sequence[Mapping[str, Any]], replayed: Sequence[Mapping[str, Any]]) -> list[Op]:
    """Pairs (kind, recorded index, replayed index): kind is ``same`` (identical, in order),
    ``reordered``, ``matched`` (to be compared field by field), ``missing`` or ``extra``."""
    rec_keys = [_content_key(v) for v in recorded]
    rep_keys = [_content_key(v) for v in replayed]
    if rec_keys == rep_keys:  # the common case: nothing changed
        return [("same", n, n) for n in range(len(rec_keys))]
    ops: list[Op] = []
    rec_done: set[int] = set()
    rep_done: set[int] = set()
    for block in difflib.SequenceMatcher(None, rec_keys, rep_keys, autojunk=False).get_matching_blocks():
        for n in range(block.size):
            ops.append(("same", block.a + n, block.b + n))
            rec_done.add(block.a + n)
            rep_done.add(block.b + n)
    waiting: dict[str, list[int]] = {}
    for j, key in enumerate(rep_keys):
        if j not in rep_done:
            waiting.setdefault(key, []).append(j)
    for i, key in enumerate(rec_keys):
        if i not in rec_done and waiting.get(key):
            j = waiting[key].pop(0)
            ops.append(("reordered", i, j))
            rec_done.add(i)
            rep_done.add(j)
    rec_left = [i for i in range(len(recorded)) if i not in rec_done]
    rep_left = [j for j in range(len(replayed)) if j not in rep_done]
    ops += _align_by(rec_left, rep_left, [signature(recorded[i]) for i in rec_left],
                     [signature(replayed[j]) for j in rep_left], recorded, replayed)
    # Turn order: by recorded position; an extra activity just before the first pair that follows it
    # (so after whatever went missing in the same gap).
    paired = [(i, j) for _, i, j in ops if i is not None and j is not None]

    def position(op: Op) -> tuple[float, int]:
        _, i, j = op
        if i is not None:
            return (i, j if j is not None else -1)
        assert j is not None
        after = [a for a, b in paired if b > j]
        return ((min(after) if after else len(recorded)) - 0.25, j)

    return sorted(ops, key=position)


def _align_by(
    rec_left: list[int],
    rep_left: list[int],
    rec_sigs: list[Any],
    rep_sigs: list[Any],
    recorded: Sequence[Mapping[str, Any]],
    replayed: Sequence[Mapping[str, Any]],
    weak: bool = False,
) -> list[Op]:
    ops: list[Op] = []
    matcher = difflib.SequenceMatcher(None, rec_sigs, rep_sigs, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            ops += [("matched", rec_left[a0 + n], rep_left[b0 + n]) for n in range(a1 - a0)]
        elif tag == "replace" and not weak:
            # A reply whose text became a card is still the same reply, changed: try type alone.
            rl, pl = rec_left[a0:a1], rep_left[b0:b1]
            ops += _align_by(rl, pl, [_weak(recorded[i]) for i in rl], [_weak(replayed[j]) for j in pl],
                             recorded, replayed, weak=True)
        else:
            ops += [("missing", i, None) for i in rec_left[a0:a1]]
            ops += [("extra", None, j) for j in rep_left[b0:b1]]
    return ops


def _content_key(view: Mapping[str, Any]) -> str:
    return json.dumps(view, sort_keys=True, default=str, ensure_ascii=False)


def diff_turn(
    recorded: Sequence[Mapping[str, Any]],
    replayed: Sequence[Mapping[str, Any]],
    *,
    ignore: Ignore = DEFAULT_IGNORE,
    noise: Iterable[str] = (),
) -> list[Difference]:
    """The differences between a recorded turn's activities and a replay's, in turn order; those at a
    `noise` path (or below it, or of a structural kind listed in `noise`) are marked ``noise=True``."""
    rec = [prune(dict(v), ignore) for v in recorded]
    rep = [prune(dict(v), ignore) for v in replayed]
    differences: list[Difference] = []
    for kind, i, j in align(rec, rep):
        if kind == "matched":
            assert i is not None and j is not None
            differences += field_differences(rec[i], rep[j], i, j)
        elif kind == "missing":
            assert i is not None
            differences.append(Difference(MISSING, f"[{i}]", summary(rec[i]), None, i, None))
        elif kind == "extra":
            assert j is not None
            differences.append(Difference(EXTRA, f"[{j}]", None, summary(rep[j]), None, j))
        elif kind == "reordered":
            assert i is not None and j is not None
            differences.append(Difference(REORDERED, f"[{i}]", summary(rec[i]), summary(rep[j]), i, j))
    return mark_noise(differences, noise)


def field_differences(
    recorded: Any, replayed: Any, recorded_index: int | None = None, replayed_index: int | None = None
) -> list[Difference]:
    """deepdiff of one matched pair, as `changed` differences with deepdiff paths."""
    found: list[Difference] = []
    if recorded == replayed:  # most matched pairs of a replay: no need to ask deepdiff
        return found
    tree = DeepDiff(recorded, replayed, verbose_level=2, view="tree")
    for levels in tree.values():
        for level in levels:
            found.append(
                Difference(
                    CHANGED,
                    level.path(),
                    ABSENT if level.t1 is notpresent else level.t1,
                    ABSENT if level.t2 is notpresent else level.t2,
                    recorded_index,
                    replayed_index,
                )
            )
    found.sort(key=lambda d: d.path)
    return found


def mark_noise(differences: Iterable[Difference], noise: Iterable[str]) -> list[Difference]:
    paths = set(noise)
    if not paths:
        return list(differences)
    return [replace(d, noise=True) if _is_noise(d.noise_key, paths) else d for d in differences]


_POSITION = re.compile(r"^(<\w+>)?\[(\d+)\]")


def _is_noise(key: str, paths: set[str]) -> bool:
    """Whether a difference's noise key is (below) a noise key, or (below) a path noisy in every activity."""
    anywhere = _POSITION.sub(lambda m: m.group(1) or "", key, count=1)  # the key without its position
    for candidate in {key, anywhere}:
        if candidate in paths:
            return True
        if any(candidate.startswith(known + "[") for known in paths if known.startswith(("root", "["))):
            return True
    return False


def noise_label(key: str) -> str:
    """A noise key for people: ``[1]root['text']`` -> ``root['text'] (activity 2)``."""
    match = _POSITION.match(key)
    if not match:
        return key
    rest = key[match.end():]
    return f"{match.group(1) or ''}{rest} (activity {int(match.group(2)) + 1})".strip()


def noise_paths(
    recorded_turns: Iterable[Sequence[Mapping[str, Any]]],
    baseline_turns: Iterable[Sequence[Mapping[str, Any]]],
    *,
    ignore: Ignore = DEFAULT_IGNORE,
) -> set[str]:
    """The paths (and structural kinds) at which the baseline's turns differ from the recorded ones."""
    paths: set[str] = set()
    for recorded, baseline in zip(recorded_turns, baseline_turns, strict=True):
        paths.update(d.noise_key for d in diff_turn(recorded, baseline, ignore=ignore))
    return paths


def describe(difference: Difference | Mapping[str, Any]) -> str:
    """One line for people: ``changed root['text']: 'a' → 'b'``, ``missing [1]: message 'done'``."""
    d = difference if isinstance(difference, Difference) else Difference.from_dict(difference)
    if d.kind == CHANGED:
        return f"changed {d.path}: {_short(d.recorded)} → {_short(d.replayed)}"
    if d.kind == MISSING:
        return f"missing {d.path}: {_label(d.recorded)}"
    if d.kind == EXTRA:
        return f"extra {d.path}: {_label(d.replayed)}"
    return f"reordered {d.path} → [{d.replayed_index}]: {_label(d.recorded)}"


def _label(info: Any) -> str:
    if not isinstance(info, Mapping):
        return _short(info)
    words = [str(info.get("type") or "activity")]
    if info.get("text"):
        words.append(_short(info["text"]))
    elif info.get("attachments"):
        words.append("with " + ", ".join(str(a) for a in info["attachments"]))
    if info.get("route"):
        words.append(f"({info['route']})")
    return " ".join(words)


def _short(value: Any, limit: int = 60) -> str:
    if value == ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- streams ------------------------------------------------------------------------------------------


def collapse_streams(acts: Sequence[Mapping[str, Any]], views: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn's views with each stream (`botproxy.wire.streams`) made one view, where the stream began: how many
    chunks a build sends is timing, so a stream is compared by its final activity and its structure.

    The stream's view is its final's (or, with no final, its last chunk's) with the streaminfo entity
    reduced to how the stream ended, and ``@stream``: its informative texts in order."""
    parts = [streams.stream_part(a["body"]) if isinstance(a.get("body"), dict) else None for a in acts]
    if not any(parts):
        return list(views)
    out = []
    for group in streams.groups([(part, act.get("activity_id")) for part, act in zip(parts, acts, strict=True)]):
        members = [(i, part) for i in group if (part := parts[i]) is not None]
        if not members:
            out.append(views[group[0]])
            continue
        final = next((i for i, part in members if part.final), None)
        view = dict(views[final if final is not None else group[-1]])
        ended = {"type": streams.STREAM_INFO, "streamType": streams.FINAL if final is not None else "unfinished"}
        entities = view.get("entities")
        if isinstance(entities, list):
            view["entities"] = [
                ended if isinstance(e, dict) and str(e.get("type", "")).lower() == streams.STREAM_INFO else e
                for e in entities
            ]
        informative: list[Any] = []
        for i, part in members:
            text = acts[i].get("text")
            if part.stream_type == streams.INFORMATIVE and (not informative or informative[-1] != text):
                informative.append(text)
        view["@stream"] = {"informative": informative}
        out.append(view)
    return out
