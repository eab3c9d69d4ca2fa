"""botproxy's exceptions, one tree so callers catch at the right level.

BotproxyError            anything botproxy reports to the user as one line
├── UsageError           bad options or arguments (exit 2)
├── StoreError           the database cannot be opened, read or written
│   └── SessionNotFound  no session with that name or id
├── ListenError          a listener could not bind (port in use, bad address)
├── UpstreamError        a bot or service that must answer does not
├── OutputError          a file botproxy writes (a report, an export, JUnit XML) cannot be written
└── MissingExtra         a command needs an optional extra that is not installed (`botproxy[demo]`)
"""


class BotproxyError(Exception):
    """An error with a message meant for the user: what is wrong and what to do."""


class UsageError(BotproxyError):
    pass


class StoreError(BotproxyError):
    pass


class SessionNotFound(StoreError):
    pass


class ListenError(BotproxyError):
    pass


class UpstreamError(BotproxyError):
    pass


class OutputError(BotproxyError):
    pass


class MissingExtra(BotproxyError):
    pass
