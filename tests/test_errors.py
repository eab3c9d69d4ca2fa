"""One exception tree: a file botproxy cannot write is an OutputError wherever it is written."""

from __future__ import annotations

import pytest
from test_replay_junit import RUN

from botproxy import store
from botproxy.errors import BotproxyError, OutputError
from botproxy.interop import export_session
from botproxy.present.junit import write_junit


@pytest.fixture
def blocker(tmp_path):
    """A file where a folder would have to be."""
    path = tmp_path / "file"
    path.write_text("")
    return path


def test_output_error_is_a_botproxy_error():
    assert issubclass(OutputError, BotproxyError)


def test_junit_xml_that_cannot_be_written_is_an_output_error(blocker):
    with pytest.raises(OutputError, match="cannot write JUnit XML"):
        write_junit(RUN, blocker / "junit.xml")


def test_an_export_that_cannot_be_written_is_an_output_error(tmp_path, blocker):
    db_path = str(tmp_path / "e.db")
    db = store.open_db(db_path, create=True, write=True)
    db["sessions"].insert({"name": "e", "started_at": "2026-12-03T06:00:00.000Z", "source": "import"})
    db.conn.close()
    with pytest.raises(OutputError, match="cannot write"):
        export_session(db_path, "e", "har", out=str(blocker / "e.har"))
