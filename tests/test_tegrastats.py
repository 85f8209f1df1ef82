"""tegrastats parsing on the line formats of AGX Orin, Orin NX and Orin Nano, JetPack 5 and 6, and the sampler.

Lines are written from the documented formats (L4T "tegrastats Utility" appendix, JetPack 5.1 and 6.x),
rail names per module as the Orin power-monitor (INA3221) channels are named.
"""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from sage_edge import tegrastats as ts

AGX_ORIN_JP5 = (
    "RAM 2448/30536MB (lfb 6455x4MB) SWAP 0/15268MB (cached 0MB) CPU [1%@729,0%@729,0%@729,0%@729,0%@729,"
    "0%@729,0%@729,0%@729,off,off,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 "
    "CV0@-256C CPU@43.875C Tboard@32C SOC2@40.156C Tdiode@33.25C SOC0@40.562C CV1@-256C GPU@-256C "
    "tj@43.875C SOC1@40.218C CV2@-256C VDD_GPU_SOC 2387mW/2387mW VDD_CPU_CV 398mW/398mW "
    "VIN_SYS_5V0 2512mW/2512mW NC 0mW/0mW VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"
)
AGX_ORIN_JP6 = (
    "11-26-2026 06:12:03 RAM 3117/62841MB (lfb 13x4MB) SWAP 0/31421MB (cached 0MB) CPU [12%@2201,8%@2201,"
    "3%@2201,1%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201,0%@2201] EMC_FREQ 4%@3199 "
    "GR3D_FREQ 87%@[1300,1300] NVENC off NVDEC off NVJPG off NVJPG1 off VIC off OFA off NVDLA0 off "
    "NVDLA1 off PVA0_FREQ off APE 174 cpu@52.5C soc2@48.281C soc0@49.406C gpu@55.125C tj@55.125C "
    "soc1@48.5C VDD_GPU_SOC 14317mW/9870mW VDD_CPU_CV 2391mW/1990mW VIN_SYS_5V0 4638mW/4420mW"
)
ORIN_NX_JP5 = (
    "RAM 2011/15388MB (lfb 2712x4MB) SWAP 0/7694MB (cached 0MB) CPU [2%@729,1%@729,0%@729,0%@729,0%@729,"
    "0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] VIC_FREQ 115 APE 200 CV0@-256C CPU@45.375C "
    "SOC2@42.781C SOC0@43.781C CV1@-256C GPU@-256C tj@45.375C SOC1@42.312C CV2@-256C "
    "VDD_IN 4367mW/4367mW VDD_CPU_GPU_CV 556mW/556mW VDD_SOC 1350mW/1350mW"
)
ORIN_NX_JP6 = (
    "11-26-2026 06:12:04 RAM 3021/15656MB (lfb 5x4MB) SWAP 0/7828MB (cached 0MB) CPU [5%@1984,2%@1984,"
    "1%@1984,0%@1984,0%@1984,0%@1984,0%@1984,0%@1984] EMC_FREQ 12%@3199 GR3D_FREQ 99%@[918] NVENC off "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 200 "
    "cpu@51.25C soc2@49.5C soc0@50.031C gpu@53.281C tj@53.281C soc1@49.437C "
    "VDD_IN 12870mW/11512mW VDD_CPU_GPU_CV 5130mW/4416mW VDD_SOC 3096mW/2901mW"
)
ORIN_NANO_JP5 = (
    "RAM 1958/7620MB (lfb 1068x4MB) SWAP 0/3810MB (cached 0MB) CPU [3%@729,0%@729,0%@729,1%@729,off,off] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0] VIC_FREQ 115 APE 200 CPU@46.625C SOC2@44.281C SOC0@45.031C "
    "CV1@-256C GPU@-256C tj@46.625C SOC1@43.468C CV2@-256C VDD_IN 4208mW/4208mW VDD_CPU_GPU_CV 476mW/476mW "
    "VDD_SOC 1270mW/1270mW"
)
# JetPack 6 without root: no EMC_FREQ, GR3D_FREQ without a clock.
ORIN_NANO_JP6 = (
    "11-26-2026 06:12:05 RAM 2316/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@1510,0%@1510,"
    "0%@1510,0%@1510,0%@1510,0%@1510] GR3D_FREQ 41% cpu@47.843C soc2@46.437C soc0@46.781C gpu@46.375C "
    "tj@47.843C soc1@46.218C VDD_IN 6721mW/4721mW VDD_CPU_GPU_CV 1552mW/552mW VDD_SOC 1426mW/1426mW"
)
# The older unit-less style (Jetson Nano / Xavier, JetPack 4-5): POM_5V_IN cur/avg.
NANO_JP4 = (
    "RAM 1766/3964MB (lfb 197x4MB) SWAP 0/2048MB (cached 0MB) CPU [24%@1224,15%@1224,13%@1224,10%@1224] "
    "EMC_FREQ 0% GR3D_FREQ 0% PLL@21C CPU@25C PMIC@100C GPU@23.5C AO@33.5C thermal@24.5C "
    "POM_5V_IN 2545/2547 POM_5V_GPU 0/0 POM_5V_CPU 549/529"
)


def test_agx_orin_jetpack5() -> None:
    s = ts.parse_line(AGX_ORIN_JP5)
    assert s.rails_mw == {"VDD_GPU_SOC": 2387, "VDD_CPU_CV": 398, "VIN_SYS_5V0": 2512, "VDDQ_VDD2_1V8AO": 301}
    assert s.total_mw == 2387 + 398 + 2512 + 301  # no input rail on AGX Orin: the sum of the rails
    assert (s.gr3d_percent, s.gr3d_mhz) == (0.0, [0, 0])
    assert (s.emc_percent, s.emc_mhz) == (0.0, 2133)
    assert (s.ram_used_mb, s.ram_total_mb) == (2448, 30536)
    assert s.temperatures_c["tj"] == 43.875 and "CV0" not in s.temperatures_c  # -256C = absent sensor


def test_agx_orin_jetpack6() -> None:
    s = ts.parse_line(AGX_ORIN_JP6)
    assert s.rails_mw == {"VDD_GPU_SOC": 14317, "VDD_CPU_CV": 2391, "VIN_SYS_5V0": 4638}
    assert s.rails_avg_mw == {"VDD_GPU_SOC": 9870, "VDD_CPU_CV": 1990, "VIN_SYS_5V0": 4420}
    assert (s.gr3d_percent, s.gr3d_mhz) == (87.0, [1300, 1300])
    assert (s.emc_percent, s.emc_mhz) == (4.0, 3199)
    assert (s.ram_used_mb, s.ram_total_mb) == (3117, 62841)
    assert s.temperatures_c["gpu"] == 55.125


def test_orin_nx_jetpack5_and_6() -> None:
    s5 = ts.parse_line(ORIN_NX_JP5)
    assert s5.rails_mw == {"VDD_IN": 4367, "VDD_CPU_GPU_CV": 556, "VDD_SOC": 1350}
    assert s5.total_mw == 4367  # the input rail is the module's total
    assert (s5.gr3d_percent, s5.gr3d_mhz, s5.emc_mhz) == (0.0, [305], 2133)
    s6 = ts.parse_line(ORIN_NX_JP6)
    assert s6.rails_mw == {"VDD_IN": 12870, "VDD_CPU_GPU_CV": 5130, "VDD_SOC": 3096}
    assert s6.rails_avg_mw["VDD_IN"] == 11512
    assert (s6.gr3d_percent, s6.gr3d_mhz, s6.emc_percent) == (99.0, [918], 12.0)
    assert s6.ram_used_mb == 3021


def test_orin_nano_jetpack5_and_6() -> None:
    s5 = ts.parse_line(ORIN_NANO_JP5)
    assert s5.rails_mw == {"VDD_IN": 4208, "VDD_CPU_GPU_CV": 476, "VDD_SOC": 1270}
    assert s5.ram_total_mb == 7620
    s6 = ts.parse_line(ORIN_NANO_JP6)
    assert s6.rails_mw == {"VDD_IN": 6721, "VDD_CPU_GPU_CV": 1552, "VDD_SOC": 1426}
    assert (s6.gr3d_percent, s6.gr3d_mhz) == (41.0, [])
    assert s6.emc_percent is None and s6.emc_mhz is None


def test_unitless_pom_rails() -> None:
    s = ts.parse_line(NANO_JP4)
    assert s.rails_mw == {"POM_5V_IN": 2545, "POM_5V_GPU": 0, "POM_5V_CPU": 549}
    assert s.rails_avg_mw["POM_5V_IN"] == 2547
    assert s.total_mw == 2545
    assert s.temperatures_c["PMIC"] == 100.0


def test_non_tegrastats_lines_are_ignored() -> None:
    assert ts.parse_line("") is None
    assert ts.parse_line("tegrastats: permission denied") is None


def test_summary_average_power_per_rail_and_energy_per_frame() -> None:
    samples = [ts.parse_line(ORIN_NX_JP5), ts.parse_line(ORIN_NX_JP6)]
    summary = ts.summarize_samples(samples, frames=200, seconds=4.0)
    assert summary["samples"] == 2
    assert summary["rails_avg_mw"]["VDD_IN"] == pytest.approx((4367 + 12870) / 2)
    assert summary["rails_avg_mw"]["VDD_SOC"] == pytest.approx((1350 + 3096) / 2)
    assert summary["total_rail"] == "VDD_IN"
    # mean total 8618.5 mW x (4 s / 200 frames) = 172.37 mJ per frame
    assert summary["energy_per_frame_mj"] == pytest.approx(8618.5 * 0.02)
    assert summary["gr3d_avg_percent"] == pytest.approx(49.5)
    assert summary["gr3d_avg_mhz"] == pytest.approx((305 + 918) / 2)
    assert summary["ram_peak_mb"] == 3021
    agx = ts.summarize_samples([ts.parse_line(AGX_ORIN_JP6)], frames=10, seconds=1.0)
    assert agx["total_rail"] == "sum of rails"
    assert agx["energy_per_frame_mj"] == pytest.approx((14317 + 2391 + 4638) * 0.1)
    assert ts.summarize_samples([]) == {"samples": 0}


def test_sampler_runs_tegrastats_in_the_background(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in `tegrastats` on PATH that prints Orin NX lines: the sampler starts, parses, and stops it."""
    fake = tmp_path / "tegrastats"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1" = "--interval" ] || exit 2\n'
        f"while true; do echo '{ORIN_NX_JP6}'; sleep 0.02; done\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert ts.available()
    with ts.TegraStatsSampler(interval_ms=20) as sampler:
        assert sampler.active
        deadline = time.monotonic() + 10
        while len(sampler.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not sampler.active
    assert len(sampler.samples) >= 3
    assert sampler.samples[0].rails_mw["VDD_IN"] == 12870


def test_sampler_without_tegrastats_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with ts.TegraStatsSampler() as sampler:
        assert not sampler.active
    assert sampler.samples == []
