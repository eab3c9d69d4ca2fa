"""The authenticated path: inbound bodies pass byte for byte, and the bot's replies are captured by the
forward listener (HTTPS_PROXY) over real TLS, with mitmproxy's CA trusted by the bot process."""

import asyncio
import json
import os
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
import trustme

from botproxy.standins.connector import ConnectorChannel

INBOUND_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzZXJ2aWNldXJsIjoiaHR0cHM6Ly9pbmJvdW5kIn0.aW5ib3VuZC1zaWduYXR1cmU"
OUTBOUND_TOKEN = "outbound-aad-token-0123456789"


@pytest.fixture
async def tls_connector(tmp_path):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_path = tmp_path / "connector-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    channel = ConnectorChannel(ssl_context=server_ctx)
    await channel.start()
    try:
        yield channel, str(ca_path)
    finally:
        await channel.stop()


@pytest.fixture
async def bot_process(tmp_path):
    procs = []

    async def start(port: int, env: dict[str, str]) -> Path:
        received = tmp_path / "received.bin"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).parent / "bots" / "forward_bot.py"), str(port), str(received),
            OUTBOUND_TOKEN, stdout=asyncio.subprocess.PIPE, env=env)
        procs.append(proc)
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"READY", line
        return received

    yield start
    for proc in procs:
        proc.terminate()
        await proc.wait()


async def test_authenticated_inbound_untouched_and_replies_recorded_through_forward_proxy(
        recorders, tls_connector, bot_process, free_port):
    connector, connector_ca = tls_connector
    bot_port = free_port()
    proxy = await recorders.start(f"http://127.0.0.1:{bot_port}/api/messages", forward=True,
                                  upstream_ca=connector_ca)
    env = {**os.environ, **proxy.proxy_env(), "NO_PROXY": "", "no_proxy": ""}
    received = await bot_process(bot_port, env)

    activity = connector.activity(text="hi", conversation_id="a:1")
    # Odd spacing on purpose: any re-serialisation by the proxy would change these bytes.
    sent = json.dumps(activity, indent=3, separators=(" ,", " :")).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.endpoint, data=sent, headers={
                "Authorization": f"Bearer {INBOUND_JWT}", "Content-Type": "application/json"}) as resp:
            assert resp.status == 201
    calls = await connector.wait_for_calls(1)
    await recorders.stop(proxy)

    assert received.read_bytes() == sent
    assert calls[0].route == "reply_to_activity" and calls[0].headers["Authorization"] == f"Bearer {OUTBOUND_TOKEN}"

    exchanges = recorders.exchanges()
    inbound = next(e for e in exchanges if e["leg"] == "inbound")
    outbound = next(e for e in exchanges if e["leg"] == "outbound")
    assert inbound["rewritten"] == 0
    assert outbound["listener"] == "forward" and outbound["status"] == 200
    assert outbound["url"].startswith(connector.service_url)
    acts = recorders.activities()
    reply = next(a for a in acts if a["direction"] == "from_bot")
    assert reply["text"] == "reply through the forward proxy"
    assert reply["turn_seq"] == acts[0]["seq"] and reply["activity_id"] == calls[0].response["id"]
    assert reply["service_url"] == connector.service_url

    everything = b"".join(p.read_bytes() for p in Path(recorders.db_path).parent.glob("botproxy.db*"))
    assert INBOUND_JWT.encode() not in everything and OUTBOUND_TOKEN.encode() not in everything


async def test_forward_listener_refuses_without_its_credential_and_accepts_with_it(
        recorders, connector, tls_connector, sample_bot, monkeypatch):
    proxy = await recorders.start(sample_bot.url, forward=True, upstream_ca=tls_connector[1])
    port = proxy.forward_listen[1]
    reply = connector.activity(text="via proxy", conversation_id="fp")
    target = connector.service_url + "v3/conversations/fp/activities"
    async with aiohttp.ClientSession() as http:
        for without in (f"http://127.0.0.1:{port}", f"http://botproxy:wrong@127.0.0.1:{port}"):
            async with http.post(target, json=reply, proxy=without) as resp:
                assert resp.status == 407 and "Proxy-Authenticate" in resp.headers
            with pytest.raises(aiohttp.ClientHttpProxyError) as refused:  # CONNECT, for an https host
                await http.get(tls_connector[0].service_url, proxy=without)
            assert refused.value.status == 407
    assert connector.calls == [] and tls_connector[0].calls == []  # nothing reached anyone

    # aiohttp (trust_env) takes the credential from the HTTP_PROXY line botproxy prints.
    for name, value in proxy.proxy_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "")
    trust_mitmproxy = ssl.create_default_context(cafile=str(proxy.ca_cert))
    async with aiohttp.ClientSession(trust_env=True) as http:
        async with http.post(target, json=reply) as resp:
            assert resp.status == 200
        # HTTPS_PROXY too: a CONNECT with the credential, then TLS to mitmproxy's certificate for the host.
        secure = tls_connector[0].service_url + "v3/conversations/fp/activities"
        async with http.post(secure, json=reply, ssl=trust_mitmproxy) as resp:
            assert resp.status == 200
    [call] = connector.calls
    assert [c.body["text"] for c in tls_connector[0].calls] == ["via proxy"]
    assert call.body["text"] == "via proxy" and "Proxy-Authorization" not in call.headers
    await recorders.stop(proxy)
    forward = [x for x in recorders.exchanges() if x["listener"] == "forward"]
    assert [x["status"] for x in forward] == [407, 407, 200, 200]
    assert proxy.proxy_credential.split(":")[1] not in json.dumps(forward)
