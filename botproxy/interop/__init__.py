"""Other tools' files in and out: `.transcript` files, HAR, mitmproxy flow files.

Imports turn a file into the events a live recording would have seen and run them through the same
`SessionRecorder` and checks, writing the new session in one transaction (a failure leaves nothing).
"""

from .exporting import export_session
from .importing import import_files

__all__ = ["export_session", "import_files"]
