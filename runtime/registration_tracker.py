"""Drift tracking for ``sage-edge run --register auto``: re-check the homography in the background.

Vibration and temperature move a thermal camera against its RGB neighbour by a pixel or a few over a
flight. The tracker re-estimates the homography every ``interval_s`` seconds of frame time from a copy of
the current frame pair, on its own thread, starting from the homography in use (a local refinement within
``search_px``). It proposes the new homography only when it is *confidently better* on those same frames:

* its alignment score (``auto_registration.alignment_score``: mean zero-shift correlation of the two
  structure maps) beats the current homography's by at least ``margin`` (hysteresis: noise in the score
  cannot make it flap between two near-equal homographies), and
* it moves some corner of the IR frame by at least ``min_shift_px`` (smaller changes are not worth a
  switch), and
* it passes the estimator's own checks (confidence, overlap; ``RegistrationRefused`` otherwise).

Every decision that changes the homography is logged (and kept in ``changes``). The inference thread
never waits for an estimate with live cameras: it hands over frame copies (``submit``, ignored while a
check runs) and picks up a result when one is ready (``collect``). With files, ``collect(wait=True)`` at
each check point makes the run reproducible (the switch lands on the same frame every time).

This module is torch-free.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sage_edge.errors import SageEdgeError
from sage_edge.runtime.auto_registration import (AutoRegistrationConfig, check_homography, corner_distance,
                                                 estimate_homography)

DEFAULT_INTERVAL_S = 5.0
DEFAULT_MARGIN = 0.02
DEFAULT_MIN_SHIFT_PX = 0.5


@dataclass
class RegistrationChange:
    """One accepted switch: when (frame time), the new matrix, and why."""

    timestamp: float
    matrix: np.ndarray
    shift_px: float  # largest corner movement of the IR frame, visible pixels
    score_before: float  # alignment score of the old homography on the checked frames
    score_after: float  # ... and of the new one

    def describe(self) -> str:
        return (f"registration: switched to a new homography at t={self.timestamp:.1f} s (IR corners moved up "
                f"to {self.shift_px:.1f} px; alignment {self.score_before:.3f} -> {self.score_after:.3f})")


class DriftTracker:
    """Background re-checks of an IR -> visible homography (``matrix``) for frames of fixed sizes."""

    def __init__(self, matrix: np.ndarray, ir_size: tuple[int, int], vis_size: tuple[int, int], *,
                 interval_s: float = DEFAULT_INTERVAL_S, margin: float = DEFAULT_MARGIN,
                 min_shift_px: float = DEFAULT_MIN_SHIFT_PX, search_px: float | None = None,
                 config: AutoRegistrationConfig | None = None, log: Callable[[str], None] | None = None,
                 start_time: float = 0.0) -> None:
        if interval_s <= 0:
            raise SageEdgeError("the registration re-check interval must be positive")
        self.matrix = np.asarray(matrix, np.float64)
        self.ir_size, self.vis_size = ir_size, vis_size
        self.interval_s, self.margin, self.min_shift_px = interval_s, margin, min_shift_px
        self.search_px = search_px if search_px is not None else 0.03 * vis_size[0]
        self.config = config or AutoRegistrationConfig()
        self.log = log or (lambda message: None)
        self.changes: list[RegistrationChange] = []
        self.checks = 0
        self.check_seconds: list[float] = []
        self._next_due = start_time + interval_s
        self._lock = threading.Condition()
        self._job: tuple[np.ndarray, np.ndarray, float] | None = None
        self._busy = False
        self._result: RegistrationChange | None = None
        self._last_note = ""
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="sage-registration", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ inference thread side
    def due(self, timestamp: float) -> bool:
        return timestamp >= self._next_due

    def submit(self, ir: np.ndarray, vis: np.ndarray, timestamp: float) -> bool:
        """Hand over copies of a frame pair for a re-check; False (nothing copied) while one is running."""
        with self._lock:
            if self._busy or self._closed:
                return False
            self._job = (np.array(ir, copy=True), np.array(vis, copy=True), timestamp)
            self._busy = True
            self._next_due = timestamp + self.interval_s
            self._lock.notify_all()
            return True

    def collect(self, wait: bool = False) -> np.ndarray | None:
        """The new matrix if a finished re-check accepted one (else None). ``wait``: for a running check."""
        with self._lock:
            while wait and self._busy and not self._closed:
                self._lock.wait(0.1)
            result, self._result = self._result, None
        if result is None:
            return None
        self.matrix = result.matrix
        return result.matrix

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(5.0)

    # ------------------------------------------------------------------ tracker thread
    def _loop(self) -> None:
        _lower_thread_priority()
        while True:
            with self._lock:
                while self._job is None and not self._closed:
                    self._lock.wait(0.5)
                if self._closed:
                    return
                ir, vis, timestamp = self._job  # type: ignore[misc]
                self._job = None
                current = self.matrix
            start = time.perf_counter()
            change = self._check(ir, vis, timestamp, current)
            with self._lock:
                self.checks += 1
                self.check_seconds.append(time.perf_counter() - start)
                if change is not None:
                    self._result = change
                self._busy = False
                self._lock.notify_all()

    def _check(self, ir: np.ndarray, vis: np.ndarray, timestamp: float, current: np.ndarray
               ) -> RegistrationChange | None:
        try:
            before = check_homography(ir, vis, current, self.config)
            estimate = estimate_homography(ir, vis, self.config, initial=current, search_px=self.search_px)
        except SageEdgeError as exc:  # a flat or unrelated frame (lens cap, camera swung away): keep the current
            self._note(f"registration: re-check kept the current homography ({exc})")
            return None
        except Exception as exc:  # noqa: BLE001 - the tracker must never take the pipeline down
            self._note(f"registration: re-check failed ({type(exc).__name__}: {exc}); keeping the current homography")
            return None
        shift = corner_distance(estimate.matrix, current, self.ir_size)
        if estimate.alignment >= before + self.margin and shift >= self.min_shift_px:
            change = RegistrationChange(timestamp, estimate.matrix, shift, before, estimate.alignment)
            self.changes.append(change)
            self.log(change.describe())
            self._last_note = ""
            return change
        return None

    def _note(self, message: str) -> None:
        if message != self._last_note:  # one line per new situation, not one per check
            self.log(message)
            self._last_note = message


def _lower_thread_priority() -> None:
    """Re-checks yield the CPU to capture and inference (Linux: nice this thread only)."""
    import os

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class AutoRegister:
    """``run --register auto``: the first estimate from the first frames, then a ``DriftTracker``.

    Called on the inference thread with each normalised pair (IR uint8, visible) and its frame time;
    ``registration`` is the ``Registration`` the preprocessor should use from then on (swapped whole, so
    the inference thread always warps with one consistent matrix). The crop to the common field is
    fixed at the first estimate, inset by ``crop_inset`` of its size on every side, so outputs keep one
    frame size while the homography drifts and the inset absorbs small drifts.
    """

    def __init__(self, initial=None, crop: bool = True, interval_s: float = DEFAULT_INTERVAL_S, live: bool = True,
                 log: Callable[[str], None] | None = None, startup_frames: int = 30, crop_inset: float = 0.02,
                 config: AutoRegistrationConfig | None = None) -> None:
        self.initial = initial  # runtime.registration.Homography or None
        self.crop, self.interval_s, self.live = crop, interval_s, live
        self.log = log or (lambda message: None)
        self.startup_frames, self.crop_inset = startup_frames, crop_inset
        self.config = config or AutoRegistrationConfig()
        self.registration = None  # runtime.registration.Registration once started
        self.tracker: DriftTracker | None = None
        self.history: list[tuple[float, np.ndarray]] = []  # (frame time, matrix) of every homography installed
        self._attempts = 0
        self._rect = None
        self._sizes = None

    def __call__(self, ir: np.ndarray, vis: np.ndarray, timestamp: float) -> bool:
        """False: no registration yet, skip this pair (only while the first estimate is being found)."""
        if self.tracker is None:
            return self._start(ir, vis, timestamp)
        if self.tracker.due(timestamp):
            self._apply(self.tracker.collect(wait=not self.live), timestamp)  # files: switches land on fixed frames
            self.tracker.submit(ir, vis, timestamp)
        elif self.live:
            self._apply(self.tracker.collect(wait=False), timestamp)
        return True

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()

    def _start(self, ir: np.ndarray, vis: np.ndarray, timestamp: float) -> bool:
        ir_size, vis_size = (ir.shape[1], ir.shape[0]), (vis.shape[1], vis.shape[0])
        start = None if self.initial is None else self.initial.scaled(ir_size, vis_size)
        try:
            estimate = estimate_homography(ir, vis, self.config, initial=start)
            matrix = estimate.matrix
            self.log(f"registration: automatic, {estimate.summary()}")
        except SageEdgeError as exc:
            self._attempts += 1
            if start is not None:
                self.log(f"registration: automatic check failed ({exc}); starting from the given homography")
                matrix = start
            elif self._attempts >= self.startup_frames:
                raise SageEdgeError(f"could not register the cameras automatically from the first "
                                    f"{self._attempts} frame pairs ({exc}); calibrate by points with "
                                    "`sage-edge calibrate` and pass --homography") from None
            else:
                if self._attempts == 1:
                    self.log(f"registration: waiting for frames that register ({exc})")
                return False
        self._sizes = (ir_size, vis_size)
        if self.crop:
            from sage_edge.runtime.registration import common_field

            x, y, w, h = common_field(matrix, ir_size, vis_size)
            dx, dy = int(round(w * self.crop_inset)), int(round(h * self.crop_inset))
            self._rect = (x + dx, y + dy, max(1, w - 2 * dx), max(1, h - 2 * dy))
        self._install(matrix, timestamp)
        self.tracker = DriftTracker(matrix, ir_size, vis_size, interval_s=self.interval_s, config=self.config,
                                    log=self.log, start_time=timestamp)
        return True

    def _apply(self, matrix: np.ndarray | None, timestamp: float) -> None:
        if matrix is not None:
            self._install(matrix, timestamp)

    def _install(self, matrix: np.ndarray, timestamp: float) -> None:
        from sage_edge.runtime.registration import Homography, Registration

        ir_size, vis_size = self._sizes
        self.registration = Registration(Homography(matrix, ir_size, vis_size, self._rect), crop=self.crop)
        self.history.append((timestamp, np.array(matrix, copy=True)))
