"""User-facing errors.

Anything a user can cause (a missing file, a bad model, a wrong size) raises
``SageEdgeError`` with a message that fits on one line and says what to do. The
CLI prints it as ``error: <message>`` and exits 1, never with a traceback.
"""


class SageEdgeError(Exception):
    """An error caused by input, environment or configuration: shown as one line."""
