"""A fleet gallery's ``postgresql://`` URL as messages show it: never with its password.

:func:`parse_gallery_url` reads the URL with :mod:`urllib.parse` and rebuilds it with the
password of its user info and the values of the ``password``, ``passfile`` and ``sslpassword``
query keys replaced by ``***``; every message that names the gallery is built from that form.
A URL that does not read the same way to urllib and to libpq (an unencoded ``@`` or ``/`` in a
password, a port that is not a number, a bad percent escape) is refused before it reaches the
driver and is called "the gallery URL", never echoed: libpq would read part of the password as
a host name or a port and print it. :func:`scrub` removes the secrets from a driver's message, in
case one quotes them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .store import URL_SCHEMES, GalleryError

SECRET_KEYS = ("password", "passfile", "sslpassword")
HIDDEN = "***"
UNPARSED = "the gallery URL"


@dataclass(frozen=True)
class GalleryURL:
    """A parsed gallery URL: ``shown`` (for messages and logs) and the ``secrets`` it holds."""

    shown: str
    secrets: tuple[str, ...]


def parse_gallery_url(url: str) -> GalleryURL:
    """The URL's shown form and secrets, or a GalleryError (one line, the URL not echoed) when it
    does not parse."""
    try:
        return _parse(url)
    except _Unparsed as exc:
        raise GalleryError(
            f"{UNPARSED} does not parse ({exc}); nothing was opened. Write it as "
            f"postgresql://USER@HOST:PORT/DATABASE, with '@', '/', ':' and '%' in a password percent-encoded "
            f"(%40, %2F, %3A, %25), or give the password through PGPASSWORD or a passfile") from None


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, HIDDEN)
    return text


class _Unparsed(ValueError):
    """Why a URL does not parse, in words that quote nothing of it."""


def _parse(url: str) -> GalleryURL:
    if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
        raise _Unparsed("not a postgresql:// URL")
    if any(char.isspace() or not char.isprintable() for char in url):  # libpq stops at a NUL, refuses spaces
        raise _Unparsed("a space or a control character; percent-encode it")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _Unparsed("urllib cannot split it") from None
    if parts.fragment or "#" in url:
        raise _Unparsed("it holds a '#'")
    secrets: list[str] = []
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if "@" in userinfo:
        raise _Unparsed("more than one '@' before the host")
    _check_escapes(userinfo)
    user, colon, password = userinfo.partition(":")
    if colon:
        secrets += [password, unquote(password)]
    for host in hosts.split(","):
        _check_host(host)
    database = parts.path[1:]
    if "/" in database or "@" in database:
        raise _Unparsed("a '/' or '@' after the database name")
    _check_escapes(parts.path)
    shown_query = []
    for field in parts.query.split("&") if parts.query else []:
        key, equals, value = field.partition("=")
        if not equals or not key:
            raise _Unparsed("a query parameter without 'key='")
        _check_escapes(field)
        if unquote(key) in SECRET_KEYS:
            secrets += [value, unquote(value)]
            value = HIDDEN
        shown_query.append(f"{key}={value}")
    netloc = (f"{user}{':' + HIDDEN if colon else ''}{at}" if at else "") + hosts
    shown = f"{parts.scheme}://{netloc}{parts.path}" + ("?" + "&".join(shown_query) if shown_query else "")
    return GalleryURL(shown, tuple(dict.fromkeys(s for s in secrets if s)))


def _check_host(host: str) -> None:
    if host.startswith("["):  # [IPv6] or [IPv6]:port
        end = host.find("]")
        if end < 0:
            raise _Unparsed("an unclosed '[' in the host")
        port = host[end + 1:]
        if port and not port.startswith(":"):
            raise _Unparsed("text after an IPv6 address")
        port = port[1:]
    else:
        _, _, port = host.rpartition(":") if ":" in host else ("", "", "")
    if port and not port.isdigit():
        raise _Unparsed("a port that is not a number")


def _check_escapes(text: str) -> None:
    for position, char in enumerate(text):
        if char != "%":
            continue
        digits = text[position + 1:position + 3]
        if len(digits) < 2 or not all(c in string.hexdigits for c in digits):
            raise _Unparsed("a '%' not followed by two hex digits")
        if digits == "00":
            raise _Unparsed("a %00, which libpq refuses")
