"""Power and clocks on Jetson: a background ``tegrastats --interval`` sampler and a generic line parser.

tegrastats prints one line per interval, e.g. (JetPack 6, Orin NX)::

    11-26-2026 06:12:03 RAM 2011/15388MB (lfb 2712x4MB) SWAP 0/7694MB (cached 0MB)
    CPU [2%@729,1%@729,...] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] ... tj@45.3C
    VDD_IN 4367mW/4367mW VDD_CPU_GPU_CV 556mW/556mW VDD_SOC 1350mW/1350mW

Power rails are named per module and per JetPack (AGX Orin: VDD_GPU_SOC,
VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO; Orin NX/Nano: VDD_IN, VDD_CPU_GPU_CV,
VDD_SOC; JetPack 4/5 on Xavier/Nano: POM_5V_IN 2545/2547 with no unit), so
every ``NAME cur/avg`` token pair with an upper-case name is taken as a rail in
milliwatts. GR3D_FREQ (GPU load % and MHz, one per GPC on AGX Orin:
``0%@[305,305]``), EMC_FREQ (memory controller load % and MHz) and RAM (used /
total MB) are parsed too.

The module's total power is the input rail when one is reported (``VDD_IN``,
``POM_5V_IN``); otherwise (AGX Orin, whose rails are separate supplies) the sum
of all rails. Energy per frame is total average power x time per frame, i.e.
mW x s = mJ. It includes the board's idle power: the number a battery sees.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

# NAME cur/avg, with optional mW units (JetPack 5/6: "VDD_IN 4367mW/4367mW"; older: "POM_5V_IN 2545/2547").
_RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?(?=\s|$)")
_RAM_RE = re.compile(r"\bRAM (\d+)/(\d+)MB")
# GR3D_FREQ 45%@[1300,1300] | 45%@1300 | 45% | 45%@[305]
_FREQ_RE = r"\b{name} (\d+)%(?:@\[?([0-9,]+)\]?)?"
_TEMP_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
# Rails that carry the whole module's input power.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VDD_IN_TOTAL")
# Names that look like rails to the regex but are not power: NC = a not-connected monitor channel (AGX Orin);
# RAM/SWAP carry "MB" and never match, kept as a guard.
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "NC"}


@dataclass
class Sample:
    """One parsed tegrastats line."""

    rails_mw: dict[str, float] = field(default_factory=dict)  # instantaneous power per rail
    rails_avg_mw: dict[str, float] = field(default_factory=dict)  # tegrastats' running average per rail
    gr3d_percent: float | None = None
    gr3d_mhz: list[int] = field(default_factory=list)
    emc_percent: float | None = None
    emc_mhz: int | None = None
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    temperatures_c: dict[str, float] = field(default_factory=dict)

    @property
    def total_mw(self) -> float | None:
        return total_power(self.rails_mw)


def total_power(rails: dict[str, float]) -> float | None:
    """Module power: the input rail if reported, else the sum of all rails; None with no rails."""
    for name in TOTAL_RAILS:
        if name in rails:
            return rails[name]
    return float(sum(rails.values())) if rails else None


def _freq(line: str, name: str) -> tuple[float | None, list[int]]:
    match = re.search(_FREQ_RE.format(name=re.escape(name)), line)
    if not match:
        return None, []
    mhz = [int(x) for x in match.group(2).split(",") if x] if match.group(2) else []
    return float(match.group(1)), mhz


def parse_line(line: str) -> Sample | None:
    """Parse one tegrastats line; None for a line that holds nothing tegrastats-like."""
    sample = Sample()
    for name, cur, avg in _RAIL_RE.findall(line):
        if name in _NOT_RAILS:
            continue
        sample.rails_mw[name] = float(cur)
        sample.rails_avg_mw[name] = float(avg)
    sample.gr3d_percent, sample.gr3d_mhz = _freq(line, "GR3D_FREQ")
    sample.emc_percent, emc = _freq(line, "EMC_FREQ")
    sample.emc_mhz = emc[0] if emc else None
    ram = _RAM_RE.search(line)
    if ram:
        sample.ram_used_mb, sample.ram_total_mb = int(ram.group(1)), int(ram.group(2))
    for name, value in _TEMP_RE.findall(line):
        temperature = float(value)
        if temperature > -200:  # -256C marks an absent sensor (CV0@-256C on Orin)
            sample.temperatures_c[name] = temperature
    if not sample.rails_mw and sample.gr3d_percent is None and sample.ram_used_mb is None:
        return None
    return sample


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def summarize_samples(samples: list[Sample], frames: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    """Average power per rail (mW), total power, GPU/EMC load and clocks, peak RAM, energy per frame (mJ)."""
    if not samples:
        return {"samples": 0}
    rails: dict[str, list[float]] = {}
    for s in samples:
        for name, mw in s.rails_mw.items():
            rails.setdefault(name, []).append(mw)
    totals = [t for t in (s.total_mw for s in samples) if t is not None]
    avg_total = _mean(totals)
    gr3d_mhz = [max(s.gr3d_mhz) for s in samples if s.gr3d_mhz]
    out: dict[str, Any] = {
        "samples": len(samples),
        "rails_avg_mw": {name: _mean(values) for name, values in rails.items()},
        "total_rail": next((n for n in TOTAL_RAILS if n in rails), "sum of rails" if rails else None),
        "total_avg_mw": avg_total,
        "gr3d_avg_percent": _mean(s.gr3d_percent for s in samples if s.gr3d_percent is not None),
        "gr3d_avg_mhz": _mean(gr3d_mhz),
        "emc_avg_percent": _mean(s.emc_percent for s in samples if s.emc_percent is not None),
        "emc_avg_mhz": _mean(s.emc_mhz for s in samples if s.emc_mhz is not None),
        "ram_peak_mb": max((s.ram_used_mb for s in samples if s.ram_used_mb is not None), default=None),
        "energy_per_frame_mj": None,
    }
    if avg_total is not None and frames > 0 and seconds > 0:
        out["energy_per_frame_mj"] = avg_total * (seconds / frames)  # mW x s = mJ
    return out


def available() -> bool:
    return shutil.which("tegrastats") is not None


class TegraStatsSampler:
    """``with TegraStatsSampler(interval_ms=100) as sampler: ...; sampler.samples``.

    Runs ``tegrastats --interval N`` as a child process and parses its lines on a
    thread. Does nothing (``samples`` stays empty) where tegrastats is absent.
    """

    def __init__(self, interval_ms: int = 100, command: str = "tegrastats") -> None:
        self.interval_ms = int(interval_ms)
        self.command = command
        self.samples: list[Sample] = []
        self.process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0

    @property
    def active(self) -> bool:
        return self.process is not None

    def start(self) -> "TegraStatsSampler":
        exe = shutil.which(self.command)
        self.started_at = time.perf_counter()
        if exe is None:
            return self
        try:
            self.process = subprocess.Popen(
                [exe, "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            )
        except OSError:
            self.process = None
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            sample = parse_line(line)
            if sample is not None:
                self.samples.append(sample)

    def stop(self) -> list[Sample]:
        self.stopped_at = time.perf_counter()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self._thread is not None:
                self._thread.join(timeout=2)
            self.process = None
        return self.samples

    def __enter__(self) -> "TegraStatsSampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
