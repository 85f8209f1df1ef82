"""A few frame pairs spread over time from two sources: what ``sage-edge calibrate --auto`` registers.

Frames are paired by timestamp with the same ``Pairer`` as ``sage-edge run`` (files: media time; live
cameras and streams: capture time), and pairs are kept only ``spacing_s`` apart, so that the sample sees
the scene (or the drone) move rather than ``count`` copies of one moment. Files are read on this thread;
live sources each on a ``SourceThread``, as in ``run``.

This module is torch-free.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.pairing import IR, SIDES, VIS, Pairer
from sage_edge.runtime.sources import Frame, SourceThread, open_source


def sample_frame_pairs(ir_uri: str, vis_uri: str, count: int, spacing_s: float = 1.0, ir_format: str = "auto",
                       timeout_s: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``count`` (IR, visible) decoded frame pairs at least ``spacing_s`` apart.

    Live sources give up after ``timeout_s`` (default ``count * spacing_s + 10``) with what they have.
    One-line ``SageEdgeError`` for bad URIs, unreadable files, or no pair at all.
    """
    if count < 1:
        raise SageEdgeError("--frames must be at least 1")
    sources = [open_source(ir_uri, ir_format=ir_format), open_source(vis_uri)]
    live = any(s.live for s in sources)
    pairer = Pairer(None, live=live, periods=(sources[IR].period, sources[VIS].period))
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    if live:
        _sample_live(sources, pairer, pairs, count, spacing_s, timeout_s or count * spacing_s + 10.0)
    else:
        _sample_files(sources, pairer, pairs, count, spacing_s)
    if not pairs:
        raise SageEdgeError(f"{ir_uri} and {vis_uri}: no frame pair could be read (do their timestamps overlap?)")
    return pairs


def _sample_files(sources, pairer: Pairer, pairs: list, count: int, spacing_s: float) -> None:
    next_time = None
    try:
        for source in sources:
            source.open()
        while len(pairs) < count:
            pair = pairer.pop()
            if pair is not None:
                if next_time is None or pair.vis.timestamp >= next_time:
                    pairs.append((pair.ir.image, pair.vis.image))
                    next_time = pair.vis.timestamp + spacing_s
                continue
            side = pairer.want
            if side is None:
                return
            frame = sources[side].read()
            if frame is None:
                pairer.end(side)
            else:
                pairer.push(side, frame)
    finally:
        for source in sources:
            source.close()


def _sample_live(sources, pairer: Pairer, pairs: list, count: int, spacing_s: float, timeout_s: float) -> None:
    lock = threading.Lock()
    stop = threading.Event()
    last = [float("-inf")]

    def sink_for(side: int):
        def sink(frame: Frame | None) -> bool:
            with lock:
                if frame is None:
                    pairer.end(side)
                else:
                    pairer.push(side, frame)
                while (pair := pairer.pop()) is not None:
                    if pair.vis.arrival - last[0] >= spacing_s and len(pairs) < count:
                        pairs.append((pair.ir.image.copy(), pair.vis.image.copy()))
                        last[0] = pair.vis.arrival
                if len(pairs) >= count:
                    stop.set()
            return not stop.is_set()

        return sink

    threads = [SourceThread(SIDES[side], source, sink_for(side), stop) for side, source in enumerate(sources)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        stop.wait(0.1)
    stop.set()
    for thread in threads:
        thread.join(5.0)
    for thread in threads:
        if thread.error is not None and not pairs:
            raise thread.error if isinstance(thread.error, SageEdgeError) else SageEdgeError(str(thread.error))
