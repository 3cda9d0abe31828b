"""Credentials out of anything printed: `nats://user:secret@host` becomes `nats://user:***@host`."""

from __future__ import annotations

import re
from typing import Any

# scheme://[user[:password]@]host: the userinfo part is everything before the last '@' of the
# authority (a password may itself hold '@' or ':')
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/\s,;'\"]*)@")


def _mask(match: re.Match[str]) -> str:
    info = match.group("info")
    user, sep, _ = info.partition(":")
    # a token alone (nats://token@host) is a secret too
    return f"{match.group('scheme')}{user + ':***' if sep else '***'}@"


def redact(value: Any) -> str:
    """`value` (a URL, a list of URLs, or any text holding them) with passwords and tokens
    replaced by `***`."""
    text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return _USERINFO.sub(_mask, text)
