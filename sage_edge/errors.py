"""User-facing errors.

Anything a user can cause (a missing file, a bad model, a wrong size) raises
``SageEdgeError`` with a message that fits on one line and says what to do. The
CLI prints it as ``error: <message>`` and exits 1, never with a traceback.
"""
from __future__ import annotations


class SageEdgeError(Exception):
    """An error caused by input, environment or configuration: shown as one line."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's (often multi-line) exception text, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
