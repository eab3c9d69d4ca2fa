"""Text read from JSON files (HAR, transcripts, Playground logs) back to bytes.

JSON can hold a lone surrogate (`"\\ud83d"`: half an emoji, or an undecodable byte a Python writer kept
with `surrogateescape`); UTF-8 cannot encode one, and `str.encode` raises. Bodies are given back exactly
where the text allows it, else as bytes the recorder keeps raw and flags, never as a crash.
"""

from __future__ import annotations

import json
from typing import Any


def wire_bytes(text: str) -> bytes:
    """A captured body's text as the bytes that were on the wire: UTF-8; the surrogates a Python writer
    made of undecodable bytes become those bytes again; any other lone surrogate is kept as its
    (invalid) UTF-8 form, so the body is stored raw and flagged malformed."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def json_bytes(value: Any, **options: Any) -> bytes:
    """`value` as UTF-8 JSON text; with a lone surrogate inside, as ASCII JSON, which escapes it and
    still stands for the same value."""
    try:
        return json.dumps(value, ensure_ascii=False, **options).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, **options).encode("ascii")
