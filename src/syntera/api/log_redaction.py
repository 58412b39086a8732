"""Credentials in a URL never reach a log line.

The browser's EventSource cannot send headers, so event streams take their credential as
a query parameter (``access_token=``, ``session=``, and the widget's ``key=``). uvicorn's
access log writes the whole path with its query; this filter blanks those values first.
Metrics label requests by route template only, which has no query.
"""

from __future__ import annotations

import logging
import re

CREDENTIAL_PARAMETERS = ("access_token", "session", "key", "token", "apikey")
_CREDENTIAL = re.compile(
    r"(?P<name>(?:^|[?&])(?:" + "|".join(CREDENTIAL_PARAMETERS) + r")=)[^&\s\"']*"
)


def redact(text: str) -> str:
    """``text`` with the values of credential query parameters replaced."""
    return _CREDENTIAL.sub(r"\g<name>[redacted]", text)


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    """Add the filter to uvicorn's access log (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactCredentials) for existing in access.filters):
        access.addFilter(RedactCredentials())
