"""Optional signed site keys: a site embedding the widget gets a key
`<site>.<signature>`, the HMAC-SHA256 of `<site>|<origin>` under the
server's `callbacks.site_secret`; the key only works from that origin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_SITE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def site_key(secret: bytes, site: str, origin: str) -> str:
    if not _SITE.fullmatch(site):
        raise ValueError("a site name is 1-32 letters, digits, '_' or '-'")
    mac = hmac.new(secret, f"{site}|{origin}".encode(), hashlib.sha256).digest()
    return f"{site}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def check_site_key(secret: bytes, key: str, origin: str) -> str | None:
    """The site name when `key` is valid for `origin`, else None."""
    site, _, _ = key.partition(".")
    if not _SITE.fullmatch(site) or len(key) > 100:
        return None
    return site if hmac.compare_digest(site_key(secret, site, origin), key) else None
