"""Counts read right: one helper, present/words.counted, says "1 session" and "2 sessions" wherever a count
is printed with a noun (the recorder's summary, import's line, a replay's, a corpus run's, merge's)."""

from botproxy.present.console import Console
from botproxy.present.replay_text import corpus_lines, merge_lines, replay_lines
from botproxy.present.sessions_text import imported_line
from botproxy.present.words import counted


def test_counted_is_singular_for_exactly_one():
    assert [counted(n, "session") for n in (0, 1, 2)] == ["0 sessions", "1 session", "2 sessions"]
    assert [counted(n, "activity", "activities") for n in (1, 3)] == ["1 activity", "3 activities"]


def recorded(n):
    return {"name": "s", "id": 1, "exchanges": n, "activities": n, "conversations": n, "errors": n,
            "not_stored": n, "unfinished": n, "problems": [], "findings": {}, "db": "b.db"}


def test_the_recorders_summary_in_the_singular_and_the_plural():
    for n, expected in [
        (1, "session 's' (id 1): 1 exchange, 1 activity, 1 conversation, 1 recorder error"),
        (2, "session 's' (id 1): 2 exchanges, 2 activities, 2 conversations, 2 recorder errors"),
    ]:
        lines: list[str] = []
        Console(echo=lines.append).summary(recorded(n))
        assert lines[1] == expected
        assert f"NOT STORED: {n} exchange{'s' if n > 1 else ''} the proxy carried" in lines[2]
        assert lines[3].startswith(f"{n} exchange{'s' if n > 1 else ''} had no response")


def test_import_line_in_the_singular():
    summary = {"name": "one", "id": 3, "activities": 1, "conversations": 1, "findings": {}}
    assert imported_line(summary, "b.db") == "session 'one' (id 3): 1 activity, 1 conversation, findings: none"


def replay(turns, errors):
    run = {"id": 7, "candidate_url": "http://127.0.0.1:1/api/messages", "baseline_url": None, "noise_paths": [],
           "candidate_session": {"name": "replay-1"}, "status": "passed", "sessions": [1], "shard": None}
    summary = {"turns": turns, "same": turns, "changed": 0, "error": errors, "incomplete": 0, "regressed": 0,
               "proactive_not_replayed": 1, "sessions": 1}
    return {"run": run, "summary": summary, "session": {"name": "s"}, "turns": [], "sessions": []}


def test_replay_and_corpus_lines_in_the_singular_and_the_plural():
    one, two = replay_lines(replay(1, 1)), replay_lines(replay(2, 2))
    assert one[1].startswith("  1 proactive activity of the recording did not happen again")
    assert one[-1].startswith("run 7: 1 turn, 1 same, 0 changed, 1 error (0 incomplete")
    assert two[-1].startswith("run 7: 2 turns, 2 same, 0 changed, 2 errors (0 incomplete")
    assert corpus_lines(replay(1, 0))[-1].startswith("run 7: 1 session, 1 turn, 1 same, 0 changed, 0 errors")


def test_merge_lines_in_the_singular_and_the_plural():
    entry = {"path": "a.db", "sessions": 1, "runs": 1, "sessions_known": 2, "runs_known": 0}
    run = {"id": 4, "shards": ["1/2"], "missing": [], "status": "passed",
           "summary": {"sessions": 1, "turns": 2, "regressed": 0}}
    assert merge_lines([entry], [run], None) == [
        "a.db: 1 session and 1 run added (2 sessions and 0 runs were there already)",
        "run 4: shards 1/2 · 1 session, 2 turns, 0 regressed · passed",
    ]
