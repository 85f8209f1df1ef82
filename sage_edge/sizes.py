"""Frame sizes on the command line: ONE convention, WIDTHxHEIGHT, as camera resolutions are written.

Every size flag (``bench --resolution``, ``run --vis-size``, ``quantize``/``check-precision --shape``,
``--eval-shape``, ``build-engine --min-shape/--opt-shape/--max-shape``) reads ``640x480`` as 640 pixels
wide and 480 high, and every message prints sizes the same way. Code inside keeps numpy's (height, width)
order where arrays need it; ``parse_size`` gives (width, height), ``parse_size_hw`` (height, width).

The other order cannot be told apart in general, but the common mistake can: a portrait size that is a
standard landscape camera resolution turned sideways (``480x640``, ``512x640``, ``720x1280``, ...) is
refused with a line that gives the WIDTHxHEIGHT spelling.
"""
from __future__ import annotations

from sage_edge.errors import SageEdgeError

# Landscape resolutions of common thermal and visible cameras and video modes (width, height).
CAMERA_RESOLUTIONS = frozenset({
    (160, 120), (320, 240), (320, 256), (336, 256), (384, 288), (640, 480), (640, 512), (800, 600),
    (1024, 768), (1280, 720), (1280, 960), (1280, 1024), (1920, 1080), (1920, 1088), (1920, 1200),
    (2560, 1440), (3840, 2160),
})


def format_size(width: int, height: int) -> str:
    """(width, height) -> 'WIDTHxHEIGHT', the way every message writes a size."""
    return f"{int(width)}x{int(height)}"


def parse_size(text: str, flag: str = "size", minimum: int = 1) -> tuple[int, int]:
    """'640x480' -> (640, 480): width x height. One-line error for anything else, including a camera
    resolution given height first."""
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise SageEdgeError(f"{flag} '{text}': use WIDTHxHEIGHT, e.g. 640x480")
    width, height = int(parts[0]), int(parts[1])
    if min(width, height) < minimum:
        raise SageEdgeError(f"{flag} '{text}': width and height must be at least {minimum} (WIDTHxHEIGHT)")
    if (height, width) in CAMERA_RESOLUTIONS:
        raise SageEdgeError(
            f"{flag} '{text}': sizes are WIDTHxHEIGHT, so this is a portrait frame {width} wide and {height} "
            f"high; for a {format_size(height, width)} camera write {format_size(height, width)}"
        )
    return width, height


def parse_size_hw(text: str, flag: str = "size", minimum: int = 1) -> tuple[int, int]:
    """``parse_size`` in numpy's order: '640x480' -> (480, 640) = (height, width)."""
    width, height = parse_size(text, flag, minimum)
    return height, width
