import base64
import json
import logging
import sys

import pytest

from botproxy.record.recorder import FailureSeen, RequestSeen, ResponseSeen, SessionRecorder
from botproxy.wire.redact import REDACTED, RedactingFormatter, Redactor, is_secret_name

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzZXJ2aWNldXJsIjoiaHR0cHM6Ly94In0.c2lnbmF0dXJlLXZhbHVl"


def test_headers_keep_the_scheme_and_drop_the_secret():
    r = Redactor()
    out = dict(r.headers([("Authorization", f"Bearer {JWT}"), ("Content-Type", "application/json")]))
    assert out == {"Authorization": f"Bearer {REDACTED}", "Content-Type": "application/json"}


def test_learned_header_secret_is_removed_from_later_text():
    r = Redactor()
    r.headers([("Authorization", "BotConnector s3cr3t-directline-key")])
    assert r.text("the key is s3cr3t-directline-key!") == f"the key is {REDACTED}!"


def test_json_token_fields_and_stream_url_query():
    r = Redactor()
    body = {
        "conversationId": "abc",
        "token": "tok-1234567890",
        "expires_in": 1800,
        "streamUrl": "wss://dl/v3/directline/conversations/abc/stream?t=tok-1234567890&watermark=3",
        "nested": [{"access_token": "at-abcdefghij"}],
    }
    out = r.json(body)
    dumped = json.dumps(out)
    assert "tok-1234567890" not in dumped and "at-abcdefghij" not in dumped
    assert out["conversationId"] == "abc" and out["expires_in"] == 1800
    assert out["streamUrl"].endswith(f"?t={REDACTED}&watermark=3")


def test_jwt_anywhere_and_query_secrets_in_urls():
    r = Redactor()
    assert JWT not in r.text(f"token was {JWT} ok")
    assert r.url("https://x/stream?t=abcdefgh123&watermark=1") == f"https://x/stream?t={REDACTED}&watermark=1"


def test_form_bodies_and_raw_bytes():
    r = Redactor()
    form = r.form("grant_type=client_credentials&client_id=app&client_secret=very-secret-value")
    assert "very-secret-value" not in form and "client_id=app" in form
    assert b"very-secret-value" not in r.raw(b"\xff\x00 binary very-secret-value \xfe")


def test_short_values_are_not_learned_to_avoid_scrubbing_ordinary_text():
    r = Redactor()
    r.json({"token": "abc"})
    assert r.text("abc is fine") == "abc is fine"


# -- one pass per exchange: learn everything, then scrub (issue 10 §2) ---------------------------------


def record(request: RequestSeen, response: ResponseSeen | None = None) -> str:
    """Everything one exchange stores, as one string."""
    recorder = SessionRecorder(1)
    rows = recorder.handle(request) + recorder.handle(response or ResponseSeen(request.flow_id, 2.0, 200, [], b""))
    return json.dumps([row for _, row in rows], default=repr)


def inbound(body: bytes, headers=(), url="http://127.0.0.1:5055/api/messages") -> RequestSeen:
    return RequestSeen("f1", 1.0, "reverse", "POST", url, list(headers), body)


def test_a_header_value_repeated_in_the_same_body_is_scrubbed_there_too():
    token = "opaque-bearer-0123456789"
    body = json.dumps({"type": "message", "text": f"my token is {token}", "conversation": {"id": "c"}}).encode()
    stored = record(inbound(body, [("Authorization", f"Bearer {token}")]))
    assert token not in stored and "my token is [REDACTED]" in stored


def test_a_response_secret_is_scrubbed_from_its_own_request_before_it_is_stored():
    token = "issued-token-abcdef123"
    request = inbound(json.dumps({"type": "message", "text": f"give {token}"}).encode())
    answer = json.dumps({"token": token}).encode()
    response = ResponseSeen("f1", 2.0, 200, [("Content-Type", "application/json")], answer)
    stored = record(request, response)
    assert token not in stored and "give [REDACTED]" in stored


def test_a_jwt_in_a_body_that_is_not_utf8_is_scrubbed_byte_for_byte():
    body = b"\xff\xfe\x00binary " + JWT.encode() + b" \x80tail"
    out = Redactor().raw(body)
    assert JWT.encode() not in out and out == b"\xff\xfe\x00binary [REDACTED] \x80tail"
    stored = record(inbound(body))
    assert "eyJhbGci" not in stored


def test_a_secret_learned_elsewhere_is_scrubbed_from_a_non_utf8_body():
    r = Redactor()
    r.learn_message(None, [("X-Api-Key", "key-ü-0123456789")], None)
    out = r.raw(b"\xff before key-\xc3\xbc-0123456789 after")
    assert out == b"\xff before [REDACTED] after"


def test_short_secret_field_values_are_scrubbed_as_whole_words():
    r = Redactor()
    r.json({"password": "hunter2"})  # 7 characters: the case
    assert r.text("my password is hunter2, ok") == "my password is [REDACTED], ok"
    r.json({"pin": 1, "password": "test"})
    # A short value goes where it stands alone, not inside a longer word.
    assert r.text("the latest test") == "the latest [REDACTED]"
    r.json({"password": "abc"})  # under 4 characters: replaced in place, copies not chased
    assert r.text("abc is fine") == "abc is fine"


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", ""])
def test_form_fields_in_a_body_of_any_content_type(content_type):
    body = b"grant_type=client_credentials&client_id=app&client_secret=cs-value-42&password=pw-value-42"
    stored = record(inbound(body, [("Content-Type", content_type)] if content_type else []))
    assert "cs-value-42" not in stored and "pw-value-42" not in stored and "client_id=app" in stored


@pytest.mark.parametrize("key", ["accessToken", "clientSecret", "apiKey", "Client-Secret", "REFRESH_TOKEN",
                                 "directLineSecret", "x-api-key", "userPassword", "privateKey", "tokens"])
def test_secret_json_keys_are_matched_whatever_their_case_and_separators(key):
    r = Redactor()
    out = r.json({key: "value-of-the-secret", "text": "echo value-of-the-secret"})
    assert out == {key: REDACTED, "text": f"echo {REDACTED}"}


def test_ordinary_keys_and_fields_are_kept():
    r = Redactor()
    body = {"error": {"code": "BadArgument", "message": "exit code=2"}, "tokenExchangeResource": {"id": "x"},
            "keywords": ["a"], "isSecret": True}
    assert r.json(body) == body
    assert not is_secret_name("code") and is_secret_name("code", param=True)


@pytest.mark.parametrize("header", ["X-Api-Key", "Ocp-Apim-Subscription-Key", "X-Functions-Key", "X-MS-Token",
                                    "X-Amz-Security-Token", "X-Goog-Api-Key", "Proxy-Authorization", "api-key"])
def test_api_key_headers(header):
    r = Redactor()
    out = r.headers([(header, "header-secret-value"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
    assert out == [(header, REDACTED), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
    assert r.text("echo: header-secret-value") == f"echo: {REDACTED}"


@pytest.mark.parametrize("param", ["api_key", "key", "sig", "X-Amz-Signature", "code", "t", "token", "access_token",
                                   "subscription-key", "X-Amz-Security-Token", "client_secret", "password"])
def test_secret_query_parameters(param):
    r = Redactor()
    url = f"https://host/path?a=1&{param}=p-secret%2Bvalue&b=2"
    assert r.url(url) == f"https://host/path?a=1&{param}={REDACTED}&b=2"
    # Learned in both spellings: as sent and decoded.
    assert r.text("p-secret%2Bvalue / p-secret+value") == f"{REDACTED} / {REDACTED}"


def test_azure_sas_url_and_user_password_in_urls():
    r = Redactor()
    sas = "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026-12-31&sp=r&sig=sas-signature%3D"
    assert r.url(sas).endswith(f"&sp=r&sig={REDACTED}")
    assert r.url("https://alice:pa55w0rd-xyz@host/x") == f"https://alice:{REDACTED}@host/x"
    assert r.text("again pa55w0rd-xyz") == f"again {REDACTED}"


def test_basic_credentials_and_cookies_are_learned():
    r = Redactor()
    basic = base64.b64encode(b"alice:basic-pass-1").decode()
    r.learn_message(None, [("Authorization", f"Basic {basic}"),
                           ("Cookie", "lang=en; session=sess-0123456789; csrf_token=abcd")], None)
    assert r.text(f"{basic} basic-pass-1 sess-0123456789 abcd en") == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED} en"


def test_secrets_by_position_in_free_text_and_reprs():
    r = Redactor()
    text = ("failed with {'Authorization': 'Bearer repr-token-1', 'x': 1}; "
            "Authorization: Bearer line-token-2\npassword: colon-pw-3 and password=eq-pw-4")
    out = r.text(text)
    for secret in ("repr-token-1", "line-token-2", "colon-pw-3", "eq-pw-4"):
        assert secret not in out
    assert "'Authorization': 'Bearer [REDACTED]'" in out and "Authorization: Bearer [REDACTED]" in out


def test_log_lines_and_tracebacks_are_scrubbed():
    try:
        raise ValueError("bad key in /_botproxy/svc/x/v3/conversations?token=tb-query-token-1")
    except ValueError:
        exc_info = sys.exc_info()
    record_ = logging.LogRecord("botproxy.record.mitm.capture", logging.ERROR, __file__, 1, "hook failed for %s: %r",
                                ("http://127.0.0.1/x?sig=log-sig-2&watermark=1", "boom"), exc_info)
    redactor = Redactor()
    redactor.learn("learned-secret-3")
    record_.msg += " learned-secret-3"
    out = RedactingFormatter(redactor).format(record_)
    assert "Traceback" in out and "ValueError" in out and "watermark=1" in out
    for secret in ("tb-query-token-1", "log-sig-2", "learned-secret-3"):
        assert secret not in out


def test_recorder_errors_are_stored_scrubbed():
    recorder = SessionRecorder(1)
    recorder.redactor.learn("err-secret-12345")
    [(table, row)] = recorder.handle(FailureSeen(1.0, "request", "ValueError('x?key=k-9 err-secret-12345')"))
    assert table == "errors" and "k-9" not in row["message"] and "err-secret-12345" not in row["message"]


def test_a_long_word_does_not_make_the_url_password_search_quadratic():
    # Before the scheme was bounded, this took minutes (every letter of the word started a scheme).
    text = "a://b:c " + "x" * 2_000_000 + " http://user:pw-123456@example.com"
    assert Redactor().text(text).endswith(" http://user:[REDACTED]@example.com")


def test_many_remembered_values_are_all_scrubbed_longest_first():
    """Values are kept in merged trie patterns (not one alternation rebuilt per value); every one still
    goes, a value that extends another goes whole, and short ones only as words."""
    import random

    rnd = random.Random(10)
    r = Redactor()
    values = ["".join(rnd.choice("abcdef0123-_") for _ in range(rnd.randint(8, 40))) for _ in range(500)]
    for n, value in enumerate(values):
        r.learn(value)
        if n % 7 == 0:
            assert value not in r.text(f"x {value} y")  # scrubs between learns merge the patterns
    text = " | ".join(values)
    out = r.text(text)
    assert out == " | ".join([REDACTED] * len(values))
    r.learn("prefix-value-1")
    r.learn("prefix-value-1-and-more")
    assert r.text("<prefix-value-1-and-more>") == f"<{REDACTED}>"
    r.learn("abcd")
    assert r.text("abcd abcde") == f"{REDACTED} abcde"


def test_a_streamed_answer_is_scrubbed_with_the_secrets_of_all_its_frames():
    """deliveryMode stream: a later frame's secret field is learned before an earlier frame that echoes it
    (and the stored body) is scrubbed."""
    token = "frame-two-token-3e8a1c"
    echo = {"type": "message", "text": f"here it is: {token}"}  # not a secret field: only learning finds it
    holder = {"type": "event", "name": "tokens/response", "value": {"tokens": [token]}}  # a list: no text pattern
    body = b"".join(b"event: activity\r\ndata: " + json.dumps(a).encode() + b"\r\n\r\n" for a in (echo, holder))
    request = inbound(json.dumps({"type": "message", "text": "hi", "deliveryMode": "stream",
                                  "conversation": {"id": "c"}}).encode(), [("Content-Type", "application/json")])
    stored = record(request, ResponseSeen("f1", 2.0, 200, [("Content-Type", "text/event-stream")], body))
    assert token not in stored and "here it is: [REDACTED]" in stored and "tokens/response" in stored
