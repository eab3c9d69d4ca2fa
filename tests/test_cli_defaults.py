"""The defaults have one home, botproxy.settings.DEFAULTS: the command line, the recorder, the replay
driver, the demo and the mitmdump addon read it, so none of them can drift from what `--help` says."""

import dataclasses
import inspect

from click.testing import CliRunner
from mitmproxy.test import taddons

from botproxy import store
from botproxy.cli import cli
from botproxy.demo import record_demo
from botproxy.mitmdump import MitmdumpRecorder
from botproxy.record.mitm.proxy import ProxyConfig
from botproxy.replay.plan import ReplayOptions
from botproxy.settings import DEFAULTS


def option_defaults(command: str) -> dict:
    return {param.name: param.default for param in cli.commands[command].params}


def test_the_command_line_shows_the_defaults_of_settings():
    record, channel, replay = option_defaults("record"), option_defaults("channel"), option_defaults("replay")
    assert (record["listen"], record["forward_listen"], record["directline_listen"], record["confdir"]) == (
        DEFAULTS.listen, DEFAULTS.forward_listen, DEFAULTS.directline_listen, DEFAULTS.confdir)
    assert channel["listen"] == DEFAULTS.channel_listen
    timings = ("concurrency", "quiet_ms", "cap_ms", "timeout_s", "start_timeout")
    assert [replay[name] for name in timings] == [
        DEFAULTS.concurrency, DEFAULTS.quiet_ms, DEFAULTS.cap_ms, DEFAULTS.timeout_s, DEFAULTS.start_timeout_s]
    assert {option_defaults(name)["db_path"] for name in cli.commands if "db_path" in option_defaults(name)} == {
        DEFAULTS.db}
    help_text = " ".join(CliRunner().invoke(cli, ["record", "--help"]).output.split())
    assert f"default: {DEFAULTS.listen}" in help_text and f"URL default: {DEFAULTS.directline}" in help_text


def test_the_library_reads_the_same_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(ProxyConfig)}
    assert (fields["listen"], fields["forward_listen"], fields["directline_listen"], fields["confdir"]) == (
        DEFAULTS.listen, DEFAULTS.forward_listen, DEFAULTS.directline_listen, DEFAULTS.confdir)
    options = ReplayOptions()  # what replay_session and replay_corpus run with unless told
    assert [options.concurrency, options.quiet_ms, options.cap_ms, options.timeout_s] == [
        DEFAULTS.concurrency, DEFAULTS.quiet_ms, DEFAULTS.cap_ms, DEFAULTS.timeout_s]
    assert store.DEFAULT_DB == DEFAULTS.db
    assert inspect.signature(record_demo).parameters["confdir"].default == DEFAULTS.confdir
    with taddons.context(MitmdumpRecorder()) as context:
        assert context.options.botproxy_db == DEFAULTS.db
