"""A real CUDA exercise of sage-edge's pycuda and CUDA-graph code, without TensorRT and without torch.

``python -m sage_edge.runtime.cuda_check [--device N] [--json OUT.json]`` runs, on the GPU, the same
code paths the TensorRT backend uses (``cuda_memory``), with plain memory copies standing in for the
engine, and checks the bytes that come back:

  device        pycuda's device facts agree with libcuda's (cuDeviceGetName, compute capability):
                the name an engine sidecar records is the name the runtime compares.
  pinned        page-locked host buffers, asynchronous H2D / D2H on the non-blocking stream, events.
  mapped        zero-copy: the GPU reads and writes mapped (DEVICEMAP) host memory directly
                (skipped when the device cannot map host memory).
  cuda-graph    a captured graph of a device-to-device copy, replayed three times on new data.
  capture-fail  a capture that the driver invalidates (a synchronize under capture) raises
                CaptureFailed, leaves no graph behind, and the stream still works afterwards.

``scripts/gpu_acceptance.sh`` runs it on machines where an NVIDIA GPU is present, with or without
TensorRT. Exit status 1 when a check fails; one line (no traceback) when pycuda or CUDA is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sage_edge.errors import SageEdgeError


@dataclass
class CheckResult:
    name: str
    status: str  # "ok", "failed", "skipped"
    detail: str


def _pattern(n: int, seed: int) -> np.ndarray:
    return ((np.arange(n, dtype=np.uint32) * 2654435761 + seed) >> 13).astype(np.uint8)


def check_device(device: int, libcuda: Any) -> CheckResult:
    from sage_edge.runtime import cuda_memory

    info = cuda_memory.device_info(device)
    driver = cuda_memory.driver_device_facts(device, libcuda)
    same = driver["name"] == info.name and driver["compute_capability"] == info.compute_capability
    detail = (f"{info.name} sm {info.compute_capability}, {'integrated' if info.integrated else 'discrete'}, "
              f"{info.total_memory >> 20} MiB; libcuda says {driver['name']} sm {driver['compute_capability']}")
    return CheckResult("device", "ok" if same else "failed", detail)


def check_pinned(device: int, n: int = 1 << 20) -> CheckResult:
    from sage_edge.runtime import cuda_memory

    ctx = cuda_memory.CudaContext(device, zero_copy=False)
    try:
        with ctx.active():
            buffer = ctx.buffer((n,), np.uint8)
            start, end = ctx.event(), ctx.event()
            expected = _pattern(n, 1)
            buffer.host[:] = expected
            ctx.record(start)
            ctx.upload(buffer)
            ctx.synchronize()
            buffer.host[:] = 0
            ctx.download(buffer)
            ctx.record(end)
            ctx.synchronize()
            ms = ctx.elapsed_ms(start, end)
            ok = np.array_equal(buffer.host, expected) and ms >= 0
            buffer.free()
        return CheckResult("pinned", "ok" if ok else "failed",
                           f"{n >> 10} KiB round trip through device memory in {ms:.3f} ms (CUDA events)"
                           + ("" if ok else ": the bytes that came back differ"))
    finally:
        ctx.close()


def check_mapped(device: int, n: int = 1 << 20) -> CheckResult:
    from sage_edge.runtime import cuda_memory

    info = cuda_memory.device_info(device)
    if not info.can_map_host_memory:
        return CheckResult("mapped", "skipped", f"{info.name} cannot map host memory")
    ctx = cuda_memory.CudaContext(device, zero_copy=True)
    try:
        with ctx.active():
            cuda = ctx.cuda
            source, target = ctx.buffer((n,), np.uint8), ctx.buffer((n,), np.uint8)
            scratch = cuda.mem_alloc(n)
            expected = _pattern(n, 2)
            source.host[:] = expected
            target.host[:] = 0
            # The GPU reads the mapped source and writes the mapped target: no host-side copy is involved.
            cuda.memcpy_dtod_async(int(scratch), source.device_ptr, n, ctx.stream)
            cuda.memcpy_dtod_async(target.device_ptr, int(scratch), n, ctx.stream)
            ctx.synchronize()
            ok = np.array_equal(target.host, expected)
            scratch.free()
            source.free()
            target.free()
        return CheckResult("mapped", "ok" if ok else "failed",
                           f"GPU copied {n >> 10} KiB between mapped host buffers"
                           + (f" ({'integrated: zero-copy' if info.integrated else 'discrete: over the bus'})"
                              if ok else ": the target did not receive the bytes"))
    finally:
        ctx.close()


def check_cuda_graph(device: int, libcuda: Any, n: int = 1 << 16) -> CheckResult:
    from sage_edge.runtime import cuda_memory

    ctx = cuda_memory.CudaContext(device, zero_copy=False)
    try:
        with ctx.active():
            cuda = ctx.cuda
            source, target = ctx.buffer((n,), np.uint8), ctx.buffer((n,), np.uint8)
            graph = cuda_memory.CudaGraph(
                ctx, lambda: cuda.memcpy_dtod_async(target.device_ptr, source.device_ptr, n, ctx.stream), libcuda)
            replays = []
            try:
                for seed in range(3):
                    expected = _pattern(n, 10 + seed)
                    source.host[:] = expected
                    ctx.upload(source)
                    graph.launch()
                    ctx.download(target)
                    ctx.synchronize()
                    replays.append(bool(np.array_equal(target.host, expected)))
            finally:
                try:
                    ctx.synchronize()  # no copy may still be queued on memory about to be freed
                finally:
                    graph.destroy()
                    source.free()
                    target.free()
        ok = all(replays)
        return CheckResult("cuda-graph", "ok" if ok else "failed",
                           f"captured a device-to-device copy, replayed {len(replays)}x on new data: "
                           + ", ".join("right" if r else "WRONG" for r in replays))
    finally:
        ctx.close()


def check_capture_failure(device: int, libcuda: Any, n: int = 4096) -> CheckResult:
    from sage_edge.runtime import cuda_memory

    ctx = cuda_memory.CudaContext(device, zero_copy=False)
    try:
        with ctx.active():
            buffer = ctx.buffer((n,), np.uint8)
            try:
                cuda_memory.CudaGraph(ctx, ctx.synchronize, libcuda)  # not permitted under capture
                raised = ""
            except cuda_memory.CaptureFailed as exc:
                raised = str(exc) or "CaptureFailed"
            expected = _pattern(n, 3)
            buffer.host[:] = expected
            ctx.upload(buffer)
            ctx.synchronize()  # the stream still works: the capture was ended (the copy reads the host buffer late)
            buffer.host[:] = 0
            ctx.download(buffer)
            ctx.synchronize()
            usable = np.array_equal(buffer.host, expected)
            buffer.free()
        ok = bool(raised) and usable
        return CheckResult("capture-fail", "ok" if ok else "failed",
                           (f"capture refused as expected ({raised[:80]}); " if raised else
                            "a synchronize under capture did NOT fail; ")
                           + ("the stream works afterwards" if usable else "the stream is broken afterwards"))
    finally:
        ctx.close()


def run(device: int = 0, libcuda: Any = None) -> list[CheckResult]:
    """Every check; one that raises is reported as failed with its one line, and the others still run."""
    checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("device", lambda: check_device(device, libcuda)),
        ("pinned", lambda: check_pinned(device)),
        ("mapped", lambda: check_mapped(device)),
        ("cuda-graph", lambda: check_cuda_graph(device, libcuda)),
        ("capture-fail", lambda: check_capture_failure(device, libcuda)),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(check())
        except Exception as exc:  # pycuda / driver errors: report and go on
            results.append(CheckResult(name, "failed", f"{type(exc).__name__}: {str(exc).strip()[:200]}"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sage_edge.runtime.cuda_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    try:
        from sage_edge.runtime.cuda_memory import import_pycuda

        import_pycuda()
        results = run(args.device)
    except SageEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in results:
        print(f"{r.status.upper():8} {r.name:13} {r.detail}")
    if args.json:
        from sage_edge.atomic import write_bytes_atomic

        write_bytes_atomic(args.json, (json.dumps([asdict(r) for r in results], indent=2) + "\n").encode())
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
