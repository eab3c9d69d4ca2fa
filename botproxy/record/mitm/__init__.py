"""Embedding mitmproxy: the capture addon, the listeners, proxy authentication. The only part of the
recorder that imports mitmproxy."""
