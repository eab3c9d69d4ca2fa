"""Bot Framework wire knowledge, pure: routes, activities in bodies, streams, the serviceUrl codec,
redaction. Knows nothing of mitmproxy, SQLite or HTTP servers."""
