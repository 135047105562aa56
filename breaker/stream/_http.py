"""What the stream's and the dashboard's servers add to every response, and which ``Host`` headers they answer.

- `SECURITY_HEADERS` go out with every response of the stdlib server, the WSGI apps and the ASGI apps: no MIME
  sniffing, a Content-Security-Policy that lets the response load, run and frame nothing (the dashboard's page
  replaces it with its own, which allows the page's own script, style and stream connections), no framing by any
  page, and no ``Referer`` sent from a page of ours.
- `CorsOrigins` says which other origins' pages may read the stream from a browser (``Access-Control-Allow-Origin``).
  None by default, as Java Hystrix's servlet: the Hystrix Dashboard and Turbine read streams from their servers,
  which CORS does not concern.
- `AllowedHosts` says which ``Host`` headers a server answers, against DNS rebinding: a page on a name its author
  controls, re-pointed at 127.0.0.1, can read what a server on loopback answers, unless the server refuses the
  foreign ``Host``. An IP address or ``localhost`` cannot be such a name.

Pure functions and immutable objects: no I/O, no locks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final

__all__ = ["SECURITY_HEADERS", "AllowedHosts", "CorsOrigins", "http_origin"]

#: The headers every response carries (the dashboard's page sends its own Content-Security-Policy instead).
SECURITY_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)

_HOST_HEADER: Final = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")
_HOST_NAME: Final = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*")
_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_ADDRESSES: Final = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _strings(field: str, values: Sequence[str]) -> list[str]:
    """``values`` as a list, or TypeError naming ``field``: a sequence of non-empty strings (a str is not one)."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{field} must be a sequence of strings, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not value:
            raise TypeError(f"{field} must be a sequence of non-empty strings, got {value!r} in {values!r}")
    return list(values)


def http_origin(text: str) -> str:
    """``text`` as a serialized http(s) origin (``scheme://host[:port]``, lower case, no default port).

    Raises:
        ValueError: ``text`` is not an origin: not http(s), with a path, query, fragment or user info, or a bad
            host or port.
    """
    match = re.fullmatch(r"(https?)://(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([0-9]{1,5}))?", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{text!r} is not an origin like 'https://dashboard.example.com:8443' (no path)")
    scheme, host, port = match[1].lower(), match[2].lower(), match[3]
    if host.startswith("["):
        if not _is_ip(host[1:-1]):
            raise ValueError(f"{text!r} has a malformed IPv6 address")
    elif not _is_ip(host) and (len(host) > 253 or _HOST_NAME.fullmatch(host.rstrip(".")) is None):
        raise ValueError(f"{text!r} has a malformed host name")
    if port is not None and not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r} has a port out of range")
    explicit = port is not None and int(port) != _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}" + (f":{int(port)}" if explicit else "")


class CorsOrigins:
    """Which other origins' pages may read a response from a browser: none (the default), any (``"*"``), or those.

    Args:
        origins: ``["*"]`` for any origin, or origins like ``"https://dashboard.example.com"`` (scheme, host and
            port if not the default; no path).
        field: The option's name, for error messages.

    Raises:
        TypeError: ``origins`` is not a sequence of strings.
        ValueError: An item is not an http(s) origin, or ``"*"`` comes with others.
    """

    def __init__(self, origins: Sequence[str] = (), field: str = "cors_origins") -> None:
        given = _strings(field, origins)
        self.any = "*" in given
        if self.any and len(given) > 1:
            raise ValueError(f"{field}: '*' allows every origin; give it alone, got {given!r}")
        try:
            self.origins = frozenset() if self.any else frozenset(http_origin(origin) for origin in given)
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None

    def __repr__(self) -> str:
        return f"CorsOrigins({['*'] if self.any else sorted(self.origins)!r})"

    def headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS headers of a response to a request whose ``Origin`` header is ``origin`` (None: none sent)."""
        if self.any:
            return [("Access-Control-Allow-Origin", "*")]
        if not self.origins:
            return []
        if origin is not None and origin in self.origins:  # browsers send it serialized: lower case, no default port
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return [("Vary", "Origin")]


class AllowedHosts:
    """Which ``Host`` headers a server answers.

    Always: for a server bound to an address (the stdlib server), that address at its port, and for a loopback one
    ``localhost``, ``127.0.0.1`` and ``[::1]`` as well; for one bound to every interface, any IP address or
    ``localhost`` at its port. For an app mounted in someone else's server, which cannot know its address (a reverse
    proxy may forward any), any IP address or ``localhost``. No DNS rebinding can put one of those in ``Host``.
    Besides: the host names given, at any port; ``"*"`` turns the check off.

    Args:
        names: Other host names the server is reached by (``"dashboard.example.com"``), or ``["*"]``.
        field: The option's name, for error messages.

    Raises:
        TypeError: ``names`` is not a sequence of strings.
        ValueError: An item is not a host name or IP address (a scheme, a port or a path was given).
    """

    def __init__(self, names: Sequence[str] = (), field: str = "allowed_hosts") -> None:
        given = [name.lower() for name in _strings(field, names)]
        self.any = "*" in given
        if self.any and len(given) > 1:
            raise ValueError(f"{field}: '*' allows every host; give it alone, got {given!r}")
        for name in given:
            bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
            if not self.any and not _is_ip(bare) and _HOST_NAME.fullmatch(name) is None:
                raise ValueError(
                    f"{field}: {name!r} is not a host name or IP address; give names like 'dashboard.example.com', "
                    "without a scheme, port or path"
                )
        self.names = frozenset(name[1:-1] if name.startswith("[") else name for name in given)

    def __repr__(self) -> str:
        return f"AllowedHosts({['*'] if self.any else sorted(self.names)!r})"

    def refusal(self, values: Sequence[str], bound: tuple[str, int] | None) -> tuple[int, str] | None:
        """Why a request with these ``Host`` header values is refused (an HTTP status and a reason), or None.

        Args:
            values: Every ``Host`` header of the request (a request has exactly one).
            bound: The address and port the server is bound to; None for an app mounted in another server.
        """
        if self.any:
            return None
        if len(values) != 1:
            return 400, f"a request needs exactly one Host header, got {len(values)}"
        value = values[0].strip().lower()
        match = _HOST_HEADER.fullmatch(value)
        if match is None or (match["v6"] is not None and not _is_ip(match["v6"])):
            return 400, f"the Host header {value[:100]!r} is not a host[:port]"
        host = match["v6"] or match["name"]
        port = int(match["port"] or 80)  # these servers speak plain http
        if host in self.names or self._own(host, port, bound):
            return None
        return 403, (
            f"this server does not answer for Host {value[:100]!r}: a web page may reach it under a name that is not "
            "its own (DNS rebinding). If that name is really this server's, allow it: allowed_hosts=[...] "
            "(python -m breaker dashboard --allow-host NAME)"
        )

    @staticmethod
    def _own(host: str, port: int, bound: tuple[str, int] | None) -> bool:
        if bound is None:
            return host == "localhost" or _is_ip(host)
        address, bound_port = bound
        if port != bound_port:
            return False
        if address in _WILDCARD_ADDRESSES:
            return host == "localhost" or _is_ip(host)
        if host == address:
            return True
        return _is_ip(address) and ipaddress.ip_address(address).is_loopback and host in _LOOPBACK_NAMES
