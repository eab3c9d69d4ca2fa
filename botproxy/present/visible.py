"""What people are shown: characters that reorder or hide text are made visible.

Bidirectional controls (Unicode UAX #9: the embeddings, overrides and isolates U+202A-U+202E and
U+2066-U+2069, the marks U+200E, U+200F and U+061C) change the order in which a browser or a terminal
draws the text around them: a file name `exe.txt` preceded by U+202E (RIGHT-TO-LEFT OVERRIDE) displays
as `txt.exe`. Reports and the console show each as `⟨U+202E⟩` instead; stored data keeps them.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def visible(text: str) -> str:
    """`text` with every bidi control replaced by its code point, e.g. `⟨U+202E⟩`."""
    if not BIDI_CONTROLS.search(text):
        return text
    return BIDI_CONTROLS.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)
