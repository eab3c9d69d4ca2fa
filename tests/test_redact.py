import json

from botproxy.redact import REDACTED, Redactor

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
