"""Direct Line rules (BP-I06..I10, BP-O09..O11 and the Direct Line side of BP-O03).

First one by one through the real SessionRecorder (`DirectLineWire`): each fires on a case that breaks it,
at the activity that shows it, and stays quiet on a close case that does not; the same findings come out
of a check of the stored session. Then over real loopback through the recorder's `--directline`
listener: a crafted client misbehaving against the local Direct Line channel, a misbehaving Direct Line
stand-in in front of a well-behaved client, and the real botframework-directlinejs client against the
local channel and the SDK sample bot, over WebSocket and polling, which gets no Direct Line finding at all.
Event order is what the test feeds or what the traffic makes; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from checkkit import DirectLineWire, Scenarios, store_rows
from test_checks_offline import TracingEngine, replay

from botproxy import store
from botproxy.checks import RULES, Engine, Finding, check_session, directline, state, stored_findings
from botproxy.present.check_text import text_lines
from botproxy.record.mitm.proxy import ProxyConfig, RecordingProxy
from botproxy.record.session import LiveSession
from botproxy.sample_bot import SampleBotServer
from botproxy.standins.directline import DirectLineChannel
from botproxy.standins.server import serve

_scenarios: Scenarios[DirectLineWire] = Scenarios()
FIRES, HOLDS = _scenarios.firing, _scenarios.holding
fires, holds = _scenarios.fires, _scenarios.holds
DL_CODES = {rule.code for rule in directline.RULES} | {"BP-O03"}  # O03 has a Direct Line side


def started(conv: str = "dlc", **kw: Any) -> DirectLineWire:
    w = DirectLineWire(**kw)
    w.dl_start(conv)
    return w


# -- BP-I06 dl-missing-from ---------------------------------------------------------------------------


@fires("BP-I06")
def post_without_from() -> DirectLineWire:
    w = started()
    w.culprit = w.dl_post(text="who am I", user=None).seq
    return w


@holds("BP-I06")
def post_with_from() -> DirectLineWire:
    w = started()
    w.dl_post(text="hello")
    return w


def test_missing_from_is_info_when_the_token_names_the_user():
    w = DirectLineWire()
    w.dl_start(user="dl_ada", generate=True)
    w.dl_post(user=None)
    [finding] = w.of("BP-I06")
    assert finding.severity == "info" and finding.details["token_user"] == "dl_ada"


def test_upload_without_user_id_is_missing_from_too():
    w = started()
    w.done(w.dl_request("POST", "/conversations/dlc/upload", raw=b"file bytes"), 200, {"id": "dlc|0000000"})
    w.done(w.dl_request("POST", "/conversations/dlc/upload?userId=user1", raw=b"file bytes"), 200, {})
    [finding] = w.of("BP-I06")
    assert finding.seq is None and finding.severity == "warning" and "userId" in finding.message


# -- BP-I07 dl-from-changed -------------------------------------------------------------------------------


@fires("BP-I07")
def from_changes_mid_conversation() -> DirectLineWire:
    w = started()
    w.dl_post(text="I am Ada")
    w.culprit = w.dl_post(text="now I am Bob", user="bob").seq
    return w


@holds("BP-I07")
def from_stays_the_same() -> DirectLineWire:
    w = started()
    w.dl_post(text="I am Ada")
    w.dl_post(text="still Ada")
    return w


def test_from_other_than_the_tokens_user_is_flagged_and_a_token_user_without_dl_prefix_is_info():
    w = DirectLineWire()
    w.dl_start(user="ada", generate=True)
    post = w.dl_post(text="hi", user="mallory")
    warnings = [f for f in w.of("BP-I07") if f.severity == "warning"]
    [info] = [f for f in w.of("BP-I07") if f.severity == "info"]
    assert [f.seq for f in warnings] == [post.seq] and warnings[0].details["token_user"] is True
    assert info.seq is None and "dl_" in info.message
    quiet = DirectLineWire()
    quiet.dl_start(user="dl_ada", generate=True)
    quiet.dl_post(text="hi", user="dl_ada")
    assert quiet.findings == []


# -- BP-I08 dl-path-body-mismatch ---------------------------------------------------------------------------


@fires("BP-I08")
def body_names_another_conversation() -> DirectLineWire:
    w = started()
    w.culprit = w.dl_post(text="hi", conversation={"id": "another"}).seq
    return w


@holds("BP-I08")
def body_names_the_urls_conversation() -> DirectLineWire:
    w = started()
    w.dl_post(text="hi", conversation={"id": "dlc"})
    return w


# -- BP-I09 dl-multiple-activities --------------------------------------------------------------------------


@fires("BP-I09")
def two_activities_in_one_post() -> DirectLineWire:
    w = started()
    batch = [{"type": "message", "from": {"id": "user1"}, "text": t} for t in ("one", "two")]
    w.culprit = w.dl_post(body=batch, status=400).seq
    return w


@holds("BP-I09")
def one_activity_per_post() -> DirectLineWire:
    w = started()
    w.dl_post(text="one")
    w.dl_post(text="two")
    return w


def test_a_one_element_array_is_still_an_array():
    w = started()
    post = w.dl_post(body=[{"type": "message", "from": {"id": "user1"}, "text": "one"}], status=400)
    [finding] = w.of("BP-I09")
    assert finding.seq == post.seq and finding.details["activities"] == 1


# -- BP-I10 dl-oversize -------------------------------------------------------------------------------------


@fires("BP-I10")
def activity_over_256k() -> DirectLineWire:
    w = started()
    w.culprit = w.dl_post(text="x" * (300 * 1024), status=413).seq
    return w


@holds("BP-I10")
def activity_well_under_the_limit() -> DirectLineWire:
    w = started()
    w.dl_post(text="x" * (100 * 1024))
    return w


def test_a_large_activity_within_the_limit_is_info():
    w = started()
    w.dl_post(text="x" * (200 * 1024))
    [finding] = w.of("BP-I10")
    assert finding.severity == "info" and 200 * 1024 < finding.details["chars"] < directline.OVERSIZE


# -- BP-O09 dl-watermark-regression -------------------------------------------------------------------------


@fires("BP-O09")
def stream_watermark_goes_back() -> DirectLineWire:
    w = started()
    stream = w.dl_stream("dlc", watermark="0")
    w.dl_frame(stream, [w.delivered("dlc", 0, "welcome")], "5")
    [reset] = w.dl_frame(stream, [w.delivered("dlc", 6, "after a reset")], "2")
    w.culprit = reset
    return w


@holds("BP-O09")
def stream_then_history_by_get() -> DirectLineWire:
    # Only recent activities come over the stream; older ones are fetched by GET, on a path of their own.
    w = started()
    stream = w.dl_stream("dlc", watermark="5")
    w.dl_frame(stream, [w.delivered("dlc", 5, "live")], "6")
    w.dl_frame(stream, [w.delivered("dlc", 6, "live too")], "7")
    w.dl_get("dlc", [w.delivered("dlc", n, f"history {n}") for n in range(3)], given="3")
    w.dl_get("dlc", [w.delivered("dlc", n, f"history {n}") for n in range(3, 5)], asked="3", given="5")
    return w


def test_get_answered_with_an_older_watermark_than_it_asked_for():
    w = started()
    w.dl_get("dlc", [w.delivered("dlc", 0)], given="7")
    reset = w.dl_get("dlc", [w.delivered("dlc", 8)], asked="7", given="0")
    [finding] = w.of("BP-O09")
    assert finding.seq == reset.seq and finding.details == {"exchange_seq": 3, "watermark": "0", "asked": "7"}


def test_ids_going_back_on_one_path_or_across_sequential_posts():
    w = started()
    stream = w.dl_stream("dlc")
    w.dl_frame(stream, [w.delivered("dlc", 3, "three")], None)
    [back] = w.dl_frame(stream, [w.delivered("dlc", 2, "two")], None)
    w.dl_post(text="first", answer="dlc|0000009")
    later = w.dl_post(text="second", answer="dlc|0000004")
    assert [(f.seq, f.details.get("previous_n")) for f in w.of("BP-O09")] == [(back, 3), (later.seq, 9)]


def test_overlapping_posts_may_be_numbered_in_either_order():
    w = started()
    one = w.dl_post(text="one", close=False)
    two = w.dl_post(text="two", close=False)
    w.dl_answer(two, answer="dlc|0000002")
    w.dl_answer(one, answer="dlc|0000001")
    w.dl_post(text="three", answer="dlc|0000003")
    assert w.findings == []


@pytest.mark.parametrize(
    ("new", "old", "is_older"),
    [
        ("2", "10", True),
        ("10", "9", False),
        ("0000a-3", "0000a-42", True),
        ("0000a-42", "0000a-3", False),
        ("0", "0000a-42", True),  # a reset to zero, whatever the shape before
        ("00", "17", True),
        ("abc", "17", False),  # opaque: not judged
        ("x-3", "y-7", False),  # different prefixes: not judged
        ("7", "7", False),
    ],
)
def test_watermarks_compare_as_numbers_only_when_they_share_a_shape(new, old, is_older):
    assert directline.older(new, old) is is_older


# -- BP-O10 dl-null-watermark-overwrite ---------------------------------------------------------------------


@fires("BP-O10")
def null_watermark_overwrote_the_clients() -> DirectLineWire:
    w = started()
    w.dl_get("dlc", [w.delivered("dlc", 0, "welcome")], given="1")
    w.dl_get("dlc", [], asked="1", given=None)  # Direct Line sends no watermark: the client must keep "1"
    again = w.dl_get("dlc", [w.delivered("dlc", 0, "welcome")], given="1")  # it lost it and asks for all
    w.culprit = again.seq
    return w


@holds("BP-O10")
def null_watermark_ignored_by_the_client() -> DirectLineWire:
    w = started()
    w.dl_get("dlc", [w.delivered("dlc", 0, "welcome")], given="1")
    w.dl_get("dlc", [], asked="1", given=None)
    w.dl_get("dlc", [w.delivered("dlc", 1, "next")], asked="1", given="2")
    return w


def test_asking_with_an_older_watermark_or_null_is_reported_at_the_request():
    w = started()
    w.dl_get("dlc", [w.delivered("dlc", n) for n in range(4)], given="4")
    again = w.dl_get("dlc", [w.delivered("dlc", n) for n in range(2, 4)], asked="2", given="4")
    w.done(w.dl_request("GET", "/conversations/dlc?watermark=null"), 200, {"conversationId": "dlc"})
    stream = w.dl_stream("dlc", watermark="1")
    found = [(f.details["asked"], f.seq) for f in w.of("BP-O10")]
    assert found == [("2", again.seq), ("null", None), ("1", None)]
    assert all(f.severity == "info" for f in w.findings) and stream.closed


def test_a_watermark_delivered_while_the_request_was_under_way_does_not_count():
    w = started()
    stream = w.dl_stream("dlc", watermark="0")
    w.dl_frame(stream, [w.delivered("dlc", 0)], "1")
    get = w.dl_request("GET", "/conversations/dlc/activities?watermark=1")
    w.dl_frame(stream, [w.delivered("dlc", 1)], "2")  # arrives while the GET is in flight
    w.done(get, 200, {"activities": [], "watermark": "2"})
    assert "BP-O10" not in w.codes()


# -- BP-O11 dl-duplicate-delivery ----------------------------------------------------------------------------


@fires("BP-O11")
def polled_while_streaming() -> DirectLineWire:
    w = started()
    stream = w.dl_stream("dlc", watermark="0")
    w.dl_frame(stream, [w.delivered("dlc", 0, "welcome")], "1")
    w.culprit = w.dl_get("dlc", [w.delivered("dlc", 0, "welcome")], given="1").seq
    w.dl_get("dlc", [w.delivered("dlc", 0, "welcome")], given="1")  # once per conversation
    return w


@holds("BP-O11")
def stream_and_a_get_that_continues_it() -> DirectLineWire:
    w = started()
    stream = w.dl_stream("dlc", watermark="0")
    w.dl_frame(stream, [w.delivered("dlc", 0, "welcome")], "1")
    w.dl_get("dlc", [w.delivered("dlc", 1, "next")], asked="1", given="2")
    return w


# -- BP-O03 reply-before-parent, the Direct Line side -------------------------------------------------------


@fires("BP-O03")
def bot_reply_streamed_before_the_users_message() -> DirectLineWire:
    # Python SDK bots never set replyToId on Direct Line: the id sequence says which came first.
    w = started()
    w.dl_post(text="hello", close=False)
    stream = w.dl_stream("dlc")
    [reply] = w.dl_frame(stream, [w.delivered("dlc", 2, "You said: hello")], "3")
    w.dl_frame(stream, [w.delivered("dlc", 1, "hello", user=True)], "3")
    w.culprit = reply
    return w


@holds("BP-O03")
def users_message_streamed_before_the_reply() -> DirectLineWire:
    w = started()
    w.dl_post(text="hello", close=False)
    stream = w.dl_stream("dlc")
    w.dl_frame(stream, [w.delivered("dlc", 1, "hello", user=True)], "2")
    w.dl_frame(stream, [w.delivered("dlc", 2, "You said: hello")], "3")
    return w


def test_a_reply_naming_its_parent_is_reported_once_when_the_parent_arrives():
    w = started()
    stream = w.dl_stream("dlc")
    [reply] = w.dl_frame(stream, [w.delivered("dlc", 2, "answer", replyToId="dlc|0000001")], "3")
    assert w.findings == []
    [parent] = w.dl_frame(stream, [w.delivered("dlc", 1, "question", user=True)], "3")
    [finding] = w.of("BP-O03")
    assert (finding.seq, finding.details["parent_seq"]) == (reply, parent)
    assert w.codes() == ["BP-O03"]


def test_a_users_message_fetched_as_history_is_not_late():
    w = started()
    stream = w.dl_stream("dlc", watermark="2")
    w.dl_frame(stream, [w.delivered("dlc", 2, "answer", replyToId="dlc|0000001")], "3")
    w.dl_get("dlc", [w.delivered("dlc", n, user=n == 1) for n in range(2)], given="2")
    assert w.findings == []


def test_out_of_order_bot_activities_are_a_regression_not_a_reply_before_parent():
    w = started()
    stream = w.dl_stream("dlc")
    w.dl_frame(stream, [w.delivered("dlc", 2, "second")], "3")
    [late] = w.dl_frame(stream, [w.delivered("dlc", 1, "first")], "3")
    assert [(f.rule, f.seq) for f in w.findings] == [("BP-O09", late)]


# -- the meta-tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted([f"fires {c}" for c in FIRES] + [f"holds {c}" for c in HOLDS]))
def test_every_scenario_finds_the_same_offline(tmp_path, name):
    kind, code = name.split()
    wire = (FIRES if kind == "fires" else HOLDS)[code]()
    offline, stored, _ = replay(tmp_path, wire)
    assert offline == stored == [f.to_dict() for f in wire.findings]


def test_mixed_direct_line_session_offline_sees_the_same_events(tmp_path):
    w = DirectLineWire(engine_class=TracingEngine)
    w.dl_start("dlc")
    stream = w.dl_stream("dlc", watermark="0")
    w.dl_frame(stream, [w.delivered("dlc", 0, "welcome")], "1")
    post = w.dl_post(text="hello", close=False, id="client-chosen")
    w.dl_frame(stream, [w.delivered("dlc", 2, "You said: hello")], "3")
    w.dl_frame(stream, [w.delivered("dlc", 1, "hello", user=True)], "3")
    w.dl_answer(post)
    w.dl_post(text="as bob", user="bob")
    w.dl_get("dlc", [w.delivered("dlc", 2)], asked="1", given="3")
    w.dl_get("dlc", [], asked="3", given=None)
    w.dl_get("dlc", [], given="3")
    offline, stored, engine = replay(tmp_path, w)
    assert {f["rule"] for f in offline} == {"BP-O03", "BP-I07", "BP-O11", "BP-O10"}
    assert offline == stored == [f.to_dict() for f in w.findings]
    assert isinstance(w.engine, TracingEngine) and engine.trace == w.engine.trace


def test_stream_frames_are_not_held_for_an_exchange_offline(tmp_path):
    w = started()
    stream = w.dl_stream("dlc")
    for n in range(50):
        w.dl_frame(stream, [w.delivered("dlc", n)], str(n + 1))
    db_path = tmp_path / "session.db"
    session_id = store_rows(db_path, w.rows)
    engine = HoldCounter(strict=True)
    assert list(check_session(store.open_db(db_path), session_id, engine=engine)) == []
    assert engine.exchange_activities == 0


class HoldCounter(Engine):
    exchange_activities = 0

    def exchange_done(self, exchange, activities):
        self.exchange_activities += len(activities)
        return super().exchange_done(exchange, activities)


def test_direct_line_state_is_bounded_and_holds_no_bodies():
    w = started()
    stream = w.dl_stream("dlc")
    for n in range(2000):
        w.dl_frame(stream, [w.delivered("dlc", n, "x" * 100, replyToId=f"elsewhere-{n}")], str(n + 1))
    conv = w.engine.state.conversations["dlc"]
    assert conv.dl is not None
    assert len(conv.dl.dangling) <= 256 and len(conv.dl.marks) <= state.MAX_MARKS
    assert all(len(path.recent) <= state.MAX_RECENT for path in conv.dl.streams.values())
    assert len(w.engine.state.dl_ids) == 2000


def test_check_text_groups_client_leg_findings_apart_from_turns(tmp_path):
    w = started()
    w.dl_post(text="who am I", user=None)
    w.done(w.dl_request("POST", "/conversations/dlc/upload", raw=b"file"), 200, {})
    db_path = tmp_path / "session.db"
    session_id = store_rows(db_path, w.rows)
    db = store.open_db(db_path)
    findings = list(check_session(db, session_id, engine=Engine(strict=True)))
    activities = store.activities_by_seq(db, session_id, {f.seq for f in findings if f.seq is not None})
    lines = list(text_lines({"name": "wire"}, findings, activities))
    assert "  Direct Line client leg" in lines and "  proactive / outside a turn" not in lines
    assert sum("BP-I06" in line for line in lines) == 2  # the post and the upload (an exchange)


def test_rules_are_in_the_registry_with_their_family():
    for rule in directline.RULES:
        assert RULES[rule.code] is rule and rule.family == "directline"
    assert {r.code for r in directline.RULES} == {f"BP-I{n:02d}" for n in range(6, 11)} | {
        "BP-O09",
        "BP-O10",
        "BP-O11",
    }


# -- over real loopback, through the recorder's --directline listener -----------------------------------------

SECRET = "dl-checks-secret-0123456789"


@dataclass
class Recorded:
    live: list[Finding]
    offline: list[Finding]
    activities: list[dict[str, Any]]

    def codes(self) -> set[str]:
        return {f.rule for f in self.live}

    def of(self, code: str) -> list[Finding]:
        return [f for f in self.live if f.rule == code]


@asynccontextmanager
async def dl_recorder(tmp_path: Path, directline_url: str, bot_url: str | None = None) -> AsyncIterator[RecordingProxy]:
    """The real recorder with live checks in front of a Direct Line service (and a bot, when given)."""
    live = LiveSession(str(tmp_path / "botproxy.db"), name="dl", engine=Engine(strict=True), bot_url=bot_url)
    config = ProxyConfig(bot_url=bot_url, directline=directline_url, directline_listen="127.0.0.1:0",
                         listen="127.0.0.1:0", forward_listen=None, confdir=str(tmp_path / "mitmproxy"))
    proxy = RecordingProxy(config, live)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def recorded(tmp_path: Path) -> Recorded:
    """What the recorder stored (live findings) and what a check of the stored session finds."""
    db = store.open_db(str(tmp_path / "botproxy.db"))
    session_id = store.resolve_session(db, "dl")["id"]
    errors = list(db.query("select * from errors where session_id = ?", [session_id]))
    assert errors == []
    return Recorded(
        stored_findings(db, session_id),
        list(check_session(db, session_id, engine=Engine(strict=True))),
        list(store.iter_activities(db, session_id)),
    )


async def read_until(ws: aiohttp.ClientWebSocketResponse, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict]:
    """Activities from stream frames until `done(activities)` holds or the server closes the stream."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        while not done(got):
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            if msg.data:
                got += json.loads(msg.data)["activities"]
    return got


@pytest.mark.slow
async def test_a_misbehaving_client_against_the_local_channel(tmp_path, sample_bot: SampleBotServer):
    channel = DirectLineChannel(sample_bot.url, secret=SECRET)
    await channel.start()
    try:
        async with dl_recorder(tmp_path, channel.base_url) as proxy, aiohttp.ClientSession() as http:
            base = proxy.directline_endpoint
            async with http.post(f"{base}/conversations", headers={"Authorization": f"Bearer {SECRET}"}) as resp:
                assert resp.status == 201
                conv = await resp.json()
            cid, auth = conv["conversationId"], {"Authorization": f"Bearer {conv['token']}"}
            url = f"{base}/conversations/{cid}/activities"

            async def post(body: Any) -> int:
                async with http.post(url, json=body, headers=auth) as resp:
                    return resp.status

            def message(text: str, user: str | None = "user1", **fields: Any) -> dict[str, Any]:
                return {"type": "message", "text": text, **({"from": {"id": user}} if user else {}), **fields}

            ws = await http.ws_connect(conv["streamUrl"])  # the recorder pointed it at its listener
            assert await post(message("hello")) == 200
            assert await post(message("who am I", user=None)) == 400  # BP-I06
            assert await post(message("I am someone else", user="user2")) == 200  # BP-I07
            assert await post(message("wrong chat", conversation={"id": "another"})) == 200  # BP-I08
            assert await post([message("one"), message("two")]) == 400  # BP-I09
            assert await post(message("x" * (300 * 1024))) == 200  # BP-I10 (this channel takes it)
            everything = len(channel.conversations[cid].activities)
            streamed = await read_until(ws, lambda got: len(got) >= everything)
            async with http.get(url, headers=auth) as resp:  # all of it again, while streaming: BP-O11
                again = await resp.json()
            async with http.get(f"{url}?watermark=1", headers=auth) as resp:  # older than it was given: BP-O10
                assert resp.status == 200
            await ws.close()
    finally:
        await channel.stop()
    assert [a["id"] for a in again["activities"]] == [a["id"] for a in streamed if a["type"] != "typing"]

    found = recorded(tmp_path)
    assert found.offline == found.live
    assert found.codes() == {"BP-I06", "BP-I07", "BP-I08", "BP-I09", "BP-I10", "BP-O10", "BP-O11"}
    by_seq = {a["seq"]: a for a in found.activities}
    for code, text in [("BP-I06", "who am I"), ("BP-I07", "I am someone else"), ("BP-I08", "wrong chat"),
                       ("BP-I09", "one")]:
        [finding] = found.of(code)
        assert by_seq[finding.seq]["direction"] == "from_client" and by_seq[finding.seq]["text"] == text, code
    [oversize] = found.of("BP-I10")
    assert oversize.severity == "warning" and by_seq[oversize.seq]["text"].startswith("xxx")
    [duplicate] = found.of("BP-O11")
    assert by_seq[duplicate.seq]["route"] == "dl_get_activities"
    [older] = found.of("BP-O10")
    assert older.details["asked"] == "1" and older.severity == "info"


class MisbehavingDirectLine:
    """A Direct Line 3.0 stand-in that gets order wrong: on the client's first post it streams the bot's
    reply before the user's own message, then a watermark that went back, then an activity again; it
    numbers the next post below the first, and answers a GET with an older watermark than asked for."""

    CID = "bad"

    def __init__(self) -> None:
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.post_ids = iter([f"{self.CID}|0000005", f"{self.CID}|0000002"])
        self._runner: web.AppRunner | None = None
        self.url = ""

    def activity(self, n: int, text: str, *, user: bool = False) -> dict[str, Any]:
        sender = {"id": "user1", "role": "user"} if user else {"id": "bot", "name": "Bot", "role": "bot"}
        return {"type": "message", "id": f"{self.CID}|{n:07d}", "from": sender, "text": text,
                "conversation": {"id": self.CID}, "channelId": "directline"}

    async def start(self) -> None:
        app = web.Application()
        base = "/v3/directline/conversations"
        app.router.add_post(base, self._start)
        app.router.add_get(base + "/{cid}/stream", self._stream)
        app.router.add_post(base + "/{cid}/activities", self._post)
        app.router.add_get(base + "/{cid}/activities", self._get)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _start(self, request: web.Request) -> web.Response:
        stream = f"ws://{request.host}/v3/directline/conversations/{self.CID}/stream?watermark=0&t=tok"
        self.frames.put_nowait({"activities": [self.activity(0, "Welcome!")], "watermark": "1"})
        return web.json_response({"conversationId": self.CID, "token": "tok-0123456789", "expires_in": 1800,
                                  "streamUrl": stream}, status=201)

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        while (frame := await self.frames.get()) is not None:
            await ws.send_str(json.dumps(frame))
        await ws.close()
        return ws

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        activity_id = next(self.post_ids)
        if body.get("text") == "hello":
            for frame in (
                {"activities": [self.activity(2, "You said: hello")], "watermark": "3"},  # before "hello"
                {"activities": [self.activity(1, "hello", user=True)], "watermark": "3"},
                {"activities": [self.activity(3, "more")], "watermark": "1"},  # the watermark went back
                {"activities": [self.activity(3, "more")], "watermark": "4"},  # and the same one again
                None,
            ):
                self.frames.put_nowait(frame)
        return web.json_response({"id": activity_id})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response({"activities": [], "watermark": "0"})  # reset, whatever was asked


@pytest.mark.slow
async def test_a_misbehaving_direct_line_service_is_caught(tmp_path):
    service = MisbehavingDirectLine()
    await service.start()
    try:
        async with dl_recorder(tmp_path, service.url) as proxy, aiohttp.ClientSession() as http:
            base = proxy.directline_endpoint
            async with http.post(f"{base}/conversations", headers={"Authorization": "Bearer s"}) as resp:
                conv = await resp.json()
            auth = {"Authorization": f"Bearer {conv['token']}"}
            url = f"{base}/conversations/{conv['conversationId']}/activities"
            ws = await http.ws_connect(conv["streamUrl"])
            watermark = "0"
            for text in ("hello", "again"):
                async with http.post(url, json={"type": "message", "from": {"id": "user1"}, "text": text},
                                     headers=auth) as resp:
                    assert resp.status == 200
                if text == "hello":
                    streamed = await read_until(ws, lambda got: False)  # the service closes the stream
                    watermark = "4"  # the newest it gave, kept as a client should
            async with http.get(f"{url}?watermark={watermark}", headers=auth) as resp:
                assert (await resp.json())["watermark"] == "0"
            await ws.close()
    finally:
        await service.stop()
    assert [a["text"] for a in streamed] == ["Welcome!", "You said: hello", "hello", "more", "more"]

    found = recorded(tmp_path)
    assert found.offline == found.live
    assert found.codes() == {"BP-O03", "BP-O09", "BP-O11"}
    by_seq = {a["seq"]: a for a in found.activities}
    [early] = found.of("BP-O03")
    assert by_seq[early.seq]["text"] == "You said: hello" and by_seq[early.details["parent_seq"]]["text"] == "hello"
    at_activities = [f for f in found.of("BP-O09") if f.seq is not None]
    assert [(by_seq[f.seq]["route"], by_seq[f.seq]["text"]) for f in at_activities] == [
        ("dl_stream", "more"),  # the stream's watermark went from 3 to 1
        ("dl_post_activity", "again"),  # the second post was numbered |2 after the first got |5
    ]
    [reset] = [f for f in found.of("BP-O09") if f.seq is None]  # the GET delivered nothing but a watermark
    assert (reset.details["asked"], reset.details["watermark"]) == ("4", "0")
    [duplicate] = found.of("BP-O11")
    assert by_seq[duplicate.seq]["route"] == "dl_stream" and duplicate.severity == "info"


# -- the real client: botframework-directlinejs ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("web_socket", [True, False], ids=["websocket", "polling"])
async def test_directlinejs_against_the_local_channel_and_the_sdk_bot_gets_no_direct_line_finding(
    web_socket: bool, sample_bot: SampleBotServer, tmp_path: Path
) -> None:
    from test_directline_channel import SCRIPT, node_or_skip, run_dl_client

    node_or_skip()
    channel = DirectLineChannel(sample_bot.url, secret=SECRET)
    await channel.start()
    try:
        async with dl_recorder(tmp_path, channel.base_url, bot_url=sample_bot.url) as proxy:
            channel.bot_url = proxy.endpoint  # the bot leg is recorded and checked too
            events = await run_dl_client({"domain": proxy.directline_endpoint, "secret": SECRET, "user": "user1",
                                          "webSocket": web_socket, "welcome": 1, "messages": SCRIPT})
    finally:
        await channel.stop()
    assert any(e["event"] == "done" for e in events)

    found = recorded(tmp_path)
    directions = {a["direction"] for a in found.activities}
    assert {"from_client", "to_client", "to_bot", "from_bot"} <= directions
    assert found.offline == found.live
    assert [f.to_dict() for f in found.live if f.rule in DL_CODES] == []
    assert [f.to_dict() for f in found.live if f.severity != "info"] == []
