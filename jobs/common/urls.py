"""URL checks shared by the spec and the HTTP clients."""

import ipaddress
from urllib.parse import urlsplit


def is_loopback_http(url: str) -> bool:
    """True when `url` points at this machine (localhost, 127.0.0.0/8 or ::1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
