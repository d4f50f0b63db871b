"""Credentials out of everything printed: URLs keep their host, never their password.

A URL setting may carry credentials (``http://user:password@host:8123/?password=…``). Whatever
shows a URL — an error message, ``status``, the dashboard, a log line, a metric label — shows
:func:`redacted_url` of it, and text that may quote it (a library's error) goes through
:func:`redact` with the URL's :func:`url_secrets`.

>>> redacted_url("https://ana:s3cret@ch.example:8443/?database=x&password=s3cret")
'https://ana:***@ch.example:8443/?database=x&password=***'
>>> redact("login failed for ana:s3cret", *url_secrets("http://ana:s3cret@h/"))
'login failed for ana:***'
>>> redacted_url("http://ch.example:8123")
'http://ch.example:8123'
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry a credential in the DSNs the platform takes.
SECRET_PARAMETERS = frozenset({"password", "token", "access_token", "secret", "key"})


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials inside a URL, as written and decoded, longest first."""
    parts = urlsplit(url)
    found = {parts.password or ""}
    found |= {v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMETERS}
    found |= {quote(s, safe="") for s in found} | {unquote(s) for s in found}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def redact(text: str, *secrets: str) -> str:
    """``text`` with every one of ``secrets`` masked."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redacted_url(url: str) -> str:
    """The URL with its password and credential parameters masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode(
        [(k, MASK if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs], safe="*"
    )
    return urlunsplit(
        (parts.scheme, netloc, parts.path, query if pairs else parts.query, parts.fragment)
    )
