"""Pair IR and visible frames by timestamp.

Two unsynchronised cameras deliver frames at their own times and rates. A pair
is two frames whose timestamps are *mutually nearest* and at most
``max_skew`` apart. ``max_skew`` defaults to half the slower source's frame
period (the nominal period when the source knows it, else the median of its
recent timestamp steps).

Rate mismatch policy (e.g. a 9 Hz Lepton with a 30 Hz RGB camera): **skip,
never repeat.** Output runs at the slower camera's rate; each of its frames is
paired with the faster camera's nearest frame and the faster camera's other
frames are skipped (counted in ``skipped``). A frame is never used twice: a
repeated frame would be a stale frame, and stale frames are never fused.
A frame with no partner within ``max_skew`` (the other camera stalled,
or dropped that moment) is skipped too.

Algorithm (streaming, per step): look at the two oldest frames; call the
earlier one ``e`` and the later ``l``. If ``l - e > max_skew``, ``e`` has no
partner: skip it. Otherwise, if the next frame after ``e`` on its side is
closer to ``l``, skip ``e``; else emit ``(e, l)``. With files the next frame
is simply awaited, so the result depends only on the timestamps (every
pair, deterministic). With live sources it is not awaited when the source's
period says it cannot be closer (``l - e <= period / 2``), and each side keeps
at most ``max_buffer`` frames: older ones are dropped and counted in
``dropped`` (live sources never build a backlog).
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

from sage_edge.runtime.sources import Frame

IR, VIS = 0, 1
SIDES = ("ir", "vis")


@dataclass
class Pair:
    ir: Frame
    vis: Frame

    @property
    def skew(self) -> float:
        """Seconds between the two frames' timestamps."""
        return abs(self.ir.timestamp - self.vis.timestamp)


@dataclass
class PairingStats:
    pairs: int = 0
    skipped: list[int] = field(default_factory=lambda: [0, 0])  # frames left unpaired, per side
    dropped: list[int] = field(default_factory=lambda: [0, 0])  # live frames dropped to avoid a backlog

    def as_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "skipped": dict(zip(SIDES, self.skipped)),
            "dropped": dict(zip(SIDES, self.dropped)),
        }


class Pairer:
    """``push(side, frame)`` frames in, ``pop()`` pairs out. ``side`` is ``IR`` (0) or ``VIS`` (1).

    ``periods``: nominal frame periods (seconds) or None to measure them. ``max_skew``: seconds, or None for
    half the slower period. ``live``: do not wait for frames that cannot help; keep at most ``max_buffer``.
    """

    def __init__(self, max_skew: float | None = None, live: bool = False,
                 periods: tuple[float | None, float | None] = (None, None), max_buffer: int = 4) -> None:
        self.explicit_skew = max_skew
        self.live = live
        self.nominal = list(periods)
        self.max_buffer = max_buffer
        self.buffers: list[deque[Frame]] = [deque(), deque()]
        self.ended = [False, False]
        self._recent: list[deque[float]] = [deque(maxlen=17), deque(maxlen=17)]
        self.stats = PairingStats()
        self.want: int | None = None  # which side must deliver a frame for pop() to make progress

    # ------------------------------------------------------------------ input
    def push(self, side: int, frame: Frame) -> None:
        recent = self._recent[side]
        if recent and frame.timestamp <= recent[-1]:
            # timestamps must increase per source; a clock that jumps back (a file looping, a camera reset)
            # restarts the period estimate and drops what is buffered on that side
            recent.clear()
            self.stats.skipped[side] += len(self.buffers[side])
            self.buffers[side].clear()
        recent.append(frame.timestamp)
        buf = self.buffers[side]
        buf.append(frame)
        if self.live:
            while len(buf) > self.max_buffer:
                buf.popleft()
                self.stats.dropped[side] += 1

    def end(self, side: int) -> None:
        self.ended[side] = True

    def reset(self, side: int) -> None:
        """Forget a side's frames (its source failed: nothing buffered from before may be fused)."""
        self.stats.skipped[side] += len(self.buffers[side])
        self.buffers[side].clear()

    # ------------------------------------------------------------------ estimates
    def period(self, side: int) -> float | None:
        if self.nominal[side]:
            return self.nominal[side]
        recent = self._recent[side]
        if len(recent) < 2:
            return None
        steps = [b - a for a, b in zip(recent, list(recent)[1:]) if b > a]
        return statistics.median(steps) if steps else None

    def max_skew(self) -> float | None:
        """Seconds. None while a period is still unknown."""
        if self.explicit_skew is not None:
            return self.explicit_skew
        periods = []
        for side in (IR, VIS):
            p = self.period(side)
            if p is None:
                if self.ended[side]:  # a source that ended after one frame: any partner will do
                    return float("inf")
                self.want = side
                return None
            periods.append(p)
        return 0.5 * max(periods)

    # ------------------------------------------------------------------ output
    def _skip(self, side: int) -> None:
        self.buffers[side].popleft()
        self.stats.skipped[side] += 1

    def pop(self) -> Pair | None:
        """The next pair, or None when more frames are needed (``want`` says from which side, or None
        when both sides are exhausted)."""
        while True:
            self.want = None
            for side in (IR, VIS):
                if not self.buffers[side]:
                    if not self.ended[side]:
                        self.want = side
                    else:  # one side is over: nothing left can be paired
                        other = 1 - side
                        self.stats.skipped[other] += len(self.buffers[other])
                        self.buffers[other].clear()
                        if not self.ended[other]:
                            self.want = other
                    return None
            skew = self.max_skew()
            if skew is None:
                return None
            a, b = self.buffers[IR][0], self.buffers[VIS][0]
            early = IR if a.timestamp <= b.timestamp else VIS
            e, l = (a, b) if early == IR else (b, a)
            gap = l.timestamp - e.timestamp
            if gap > skew:
                self._skip(early)
                continue
            buf = self.buffers[early]
            if len(buf) > 1:
                if abs(buf[1].timestamp - l.timestamp) < gap:
                    self._skip(early)
                    continue
            elif not self.ended[early]:
                period = self.period(early)
                if not self.live or period is None or gap > period / 2:
                    self.want = early
                    return None
            self.buffers[IR].popleft()
            self.buffers[VIS].popleft()
            self.stats.pairs += 1
            return Pair(ir=a, vis=b)

    def drain(self) -> list[Pair]:
        pairs = []
        while (pair := self.pop()) is not None:
            pairs.append(pair)
        return pairs


def pair_timestamps(ir_times, vis_times, max_skew: float | None = None, live: bool = False,
                    periods: tuple[float | None, float | None] = (None, None)) -> list[tuple[int, int]]:
    """Index pairs for two timestamp lists fed in time order (a reference helper for tests and docs)."""
    import numpy as np

    pairer = Pairer(max_skew=max_skew, live=live, periods=periods)
    dummy = np.zeros((1, 1), np.uint8)
    events = sorted([(t, IR, i) for i, t in enumerate(ir_times)] + [(t, VIS, i) for i, t in enumerate(vis_times)])
    out: list[tuple[int, int]] = []
    for t, side, i in events:
        pairer.push(side, Frame(dummy, t, t, i))
        out += [(p.ir.index, p.vis.index) for p in pairer.drain()]
    pairer.end(IR)
    pairer.end(VIS)
    out += [(p.ir.index, p.vis.index) for p in pairer.drain()]
    return out
