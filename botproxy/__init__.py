"""botproxy: record, check and replay Microsoft Bot Framework traffic."""

__version__ = "0.1.0"
