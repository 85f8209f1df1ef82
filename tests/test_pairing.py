"""Timestamp pairing: jitter, drift, rate mismatch (9 vs 30 Hz), stalls, live drops, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from sage_edge.runtime.pairing import IR, VIS, Pairer, pair_timestamps
from sage_edge.runtime.sources import Frame


def nearest(times: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(times - t)))


def check_mutual_nearest(pairs, ir_t, vis_t, skew):
    """Every pair is within the skew, mutually nearest, and no frame is used twice."""
    ir_t, vis_t = np.asarray(ir_t), np.asarray(vis_t)
    assert len({i for i, _ in pairs}) == len(pairs)
    assert len({j for _, j in pairs}) == len(pairs)
    for i, j in pairs:
        assert abs(ir_t[i] - vis_t[j]) <= skew + 1e-12
        assert nearest(vis_t, ir_t[i]) == j
        assert nearest(ir_t, vis_t[j]) == i
    # pairs come out in time order
    assert [i for i, _ in pairs] == sorted(i for i, _ in pairs)


def test_jittered_equal_rates_pair_one_to_one():
    rng = np.random.default_rng(0)
    n, period = 200, 1 / 30
    ir_t = np.arange(n) * period + rng.uniform(-0.004, 0.004, n)
    vis_t = np.arange(n) * period + 0.003 + rng.uniform(-0.004, 0.004, n)
    pairs = pair_timestamps(ir_t, vis_t)
    assert pairs == [(i, i) for i in range(n)]


def test_drifting_clocks_stay_within_skew_and_mutually_nearest():
    n_ir, period = 300, 1 / 30
    ir_t = np.arange(n_ir) * period
    vis_t = np.arange(int(n_ir * 1.02)) * period * 0.99 + 0.005  # 1 % faster clock, drifting through a frame
    pairs = pair_timestamps(ir_t, vis_t)
    check_mutual_nearest(pairs, ir_t, vis_t, period / 2)
    # the drift makes the vis stream gain about 3 frames over 10 s: those are skipped, nothing repeats
    assert n_ir - 5 <= len(pairs) <= n_ir


def test_rate_mismatch_9_vs_30_hz_skips_the_faster_stream():
    ir_t = np.arange(45) / 9.0 + 0.002  # Lepton-like 9 Hz
    vis_t = np.arange(150) / 30.0  # 30 Hz RGB
    pairer = Pairer()
    events = sorted([(t, IR, i) for i, t in enumerate(ir_t)] + [(t, VIS, i) for i, t in enumerate(vis_t)])
    pairs = []
    dummy = np.zeros((1, 1), np.uint8)
    for t, side, i in events:
        pairer.push(side, Frame(dummy, t, t, i))
        pairs += [(p.ir.index, p.vis.index) for p in pairer.drain()]
    pairer.end(IR), pairer.end(VIS)
    pairs += [(p.ir.index, p.vis.index) for p in pairer.drain()]
    # default skew: half the slower (9 Hz) period
    assert pairer.max_skew() == pytest.approx(0.5 / 9.0, rel=1e-6)
    # every 9 Hz frame is fused exactly once, with its nearest 30 Hz frame
    assert [i for i, _ in pairs] == list(range(45))
    check_mutual_nearest(pairs, ir_t, vis_t, 0.5 / 9.0)
    assert pairer.stats.skipped[VIS] == 150 - len(pairs)
    assert pairer.stats.skipped[IR] == 0


def test_stalling_source_pauses_pairing_and_resumes():
    period = 1 / 30
    ir_t = np.arange(90) * period
    vis_t = np.array([t for t in np.arange(90) * period + 0.002 if not 1.0 <= t < 2.0])  # vis stalls for 1 s
    pairs = pair_timestamps(ir_t, vis_t)
    check_mutual_nearest(pairs, ir_t, vis_t, period / 2)
    paired_ir_times = ir_t[[i for i, _ in pairs]]
    assert not np.any((paired_ir_times > 1.0 + period) & (paired_ir_times < 2.0 - period))  # nothing fused in the gap
    assert paired_ir_times.max() > 2.5  # and it resumed afterwards
    assert len(pairs) == len(vis_t)


def test_explicit_max_skew_rejects_far_frames():
    ir_t = [0.0, 0.1, 0.2]
    vis_t = [0.03, 0.1, 0.26]
    assert pair_timestamps(ir_t, vis_t, max_skew=0.02) == [(1, 1)]
    assert pair_timestamps(ir_t, vis_t, max_skew=0.07) == [(0, 0), (1, 1), (2, 2)]


def test_file_pairing_is_independent_of_arrival_order():
    rng = np.random.default_rng(3)
    ir_t = np.cumsum(rng.uniform(0.09, 0.13, 60))
    vis_t = np.cumsum(rng.uniform(0.025, 0.04, 200))
    dummy = np.zeros((1, 1), np.uint8)

    def run(order):
        pairer = Pairer()
        out = []
        for side, i in order:
            t = (ir_t if side == IR else vis_t)[i]
            pairer.push(side, Frame(dummy, t, t, i))
            out += [(p.ir.index, p.vis.index) for p in pairer.drain()]
        pairer.end(IR), pairer.end(VIS)
        return out + [(p.ir.index, p.vis.index) for p in pairer.drain()]

    time_order = [(s, i) for _, s, i in sorted([(t, IR, i) for i, t in enumerate(ir_t)] +
                                                [(t, VIS, i) for i, t in enumerate(vis_t)])]
    all_ir_first = [(IR, i) for i in range(len(ir_t))] + [(VIS, i) for i in range(len(vis_t))]
    all_vis_first = [(VIS, i) for i in range(len(vis_t))] + [(IR, i) for i in range(len(ir_t))]
    a, b, c = run(time_order), run(all_ir_first), run(all_vis_first)
    assert a == b == c
    assert len(a) > 40


def test_live_mode_keeps_only_the_newest_frames_and_counts_drops():
    dummy = np.zeros((1, 1), np.uint8)
    pairer = Pairer(live=True, periods=(1 / 30, 1 / 30), max_buffer=2)
    for i in range(10):  # the visible camera delivers, the IR camera is silent: no backlog builds up
        pairer.push(VIS, Frame(dummy, i / 30, i / 30, i))
    assert pairer.pop() is None
    assert len(pairer.buffers[VIS]) == 2
    assert pairer.stats.dropped[VIS] == 8
    # IR comes back: the newest vis frame pairs at once (no waiting for a later frame when it cannot be closer)
    pairer.push(IR, Frame(dummy, 9 / 30 + 0.001, 0, 0))
    pair = pairer.pop()
    assert pair is not None and pair.vis.index == 9 and pair.ir.index == 0
    assert pairer.stats.skipped[VIS] == 1  # frame 8 had no partner


def test_clock_jump_back_restarts_side():
    dummy = np.zeros((1, 1), np.uint8)
    pairer = Pairer(live=True, periods=(0.1, 0.1))
    pairer.push(IR, Frame(dummy, 5.0, 5.0, 0))
    pairer.push(IR, Frame(dummy, 1.0, 1.0, 1))  # a reset camera clock: older frames are discarded
    assert [f.index for f in pairer.buffers[IR]] == [1]
    pairer.push(VIS, Frame(dummy, 1.01, 1.01, 0))
    assert pairer.pop().ir.index == 1
