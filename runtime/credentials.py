"""Credentials for the network outputs: one ``USER:PASSWORD`` per output scheme.

Naming (the same pattern for every scheme that serves viewers; ``http`` here, ``rtsp`` follows it):

    --http-credentials FILE           FILE's first line that is neither blank nor a '#' comment: USER:PASSWORD
    SAGE_EDGE_HTTP_CREDENTIALS=U:P    the environment (e.g. systemd's EnvironmentFile=)
    http://USER:PASSWORD@@:8080       in the URI; '@' then the host ('@' = every interface). Convenient, but
                                      any local user sees it in the process list (ps), so prefer the two above
    SAGE_EDGE_HTTP_TOKEN=TOKEN        HTTP only: a bearer token, accepted as ``Authorization: Bearer TOKEN``
                                      or ``?token=TOKEN`` (for clients that cannot send basic auth)

For RTSP: ``--rtsp-credentials FILE``, ``SAGE_EDGE_RTSP_CREDENTIALS``, ``rtsp://USER:PASSWORD@@:8554/name``
(``credentials_env("rtsp")``). A file or URI credential given explicitly wins over the environment; giving
it both in the URI and in a file is an error (which one was meant?). In a URI, percent-encode ``@ : / %``
inside USER or PASSWORD (``p%40ss`` for ``p@ss``); USER may not contain ``:`` (RFC 7617).

Secrets never appear in messages: ``redact_uri`` replaces the password with ``***`` and ``Credentials``
does not print its password.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote

from sage_edge.errors import SageEdgeError

TOKEN_ENV = "SAGE_EDGE_HTTP_TOKEN"


def credentials_env(scheme: str) -> str:
    """The environment variable holding USER:PASSWORD for ``scheme``: SAGE_EDGE_HTTP_CREDENTIALS, ..."""
    return f"SAGE_EDGE_{scheme.upper()}_CREDENTIALS"


def credentials_flag(scheme: str) -> str:
    """The command-line flag naming a credentials file for ``scheme``: --http-credentials, ..."""
    return f"--{scheme.lower()}-credentials"


@dataclass(frozen=True)
class Credentials:
    """A user name and password; ``source`` says where they came from (for messages, never the secret)."""

    user: str
    password: str = field(repr=False)
    source: str = "?"


def parse_credentials(text: str, source: str) -> Credentials:
    """``USER:PASSWORD`` -> ``Credentials``; one clear line if it is not that."""
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise SageEdgeError(f"{source}: give the credential as USER:PASSWORD (both non-empty)")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SageEdgeError(f"{source}: the credential contains a control character")
    return Credentials(user, password, source)


def read_credentials_file(path: str | os.PathLike, source: str) -> Credentials:
    """USER:PASSWORD from the first line of ``path`` that is neither blank nor a ``#`` comment.

    Surrounding white space and the line ending are stripped (so ``echo user:pass > FILE`` works).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SageEdgeError(f"{source} {path}: no such file") from None
    except IsADirectoryError:
        raise SageEdgeError(f"{source} {path}: is a directory; give a file holding USER:PASSWORD") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SageEdgeError(f"{source} {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return parse_credentials(line, f"{source} {path}")
    raise SageEdgeError(f"{source} {path}: the file holds no USER:PASSWORD line")


def credentials_from_env(scheme: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    name = credentials_env(scheme)
    value = (os.environ if environ is None else environ).get(name)
    return parse_credentials(value.strip(), name) if value else None


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    if not value:
        return None
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise SageEdgeError(f"{TOKEN_ENV}: the token may not contain spaces or control characters")
    return value


def _split_authority(rest: str) -> tuple[str | None, str]:
    """``'user:pass@@:8080/x'`` -> ``('user:pass', '@:8080/x')``; ``'@:8080'`` -> ``(None, '@:8080')``.

    The userinfo ends at the last '@' of the authority, unless that '@' is the host ('@' = every
    interface): then it ends at the '@' just before it.
    """
    authority, slash, path = rest.partition("/")
    at = authority.rfind("@")
    if at <= 0:
        return None, rest
    if authority[at - 1] == "@":
        at -= 1
        if at == 0:
            return None, rest
    return authority[:at], authority[at + 1:] + slash + path


def split_userinfo(uri: str, rest: str) -> tuple[Credentials | None, str]:
    """The credential in a URI's authority and the rest without it: ``rest`` is what follows ``scheme://``."""
    userinfo, rest = _split_authority(rest)
    if userinfo is None:
        return None, rest
    user, colon, password = userinfo.partition(":")
    source = redact_uri(uri)
    if not colon:
        raise SageEdgeError(f"{source}: give USER:PASSWORD before the '@' (percent-encode '@', ':' and '/' in them)")
    return parse_credentials(f"{unquote(user)}:{unquote(password)}", source), rest


def redact_uri(uri: str) -> str:
    """``http://user:secret@@:8080`` -> ``http://user:***@@:8080`` (for messages, page titles, logs)."""
    scheme, sep, rest = str(uri).partition("://")
    if not sep:
        return str(uri)
    userinfo, hostpath = _split_authority(rest)
    if userinfo is None:
        return str(uri)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpath}"
