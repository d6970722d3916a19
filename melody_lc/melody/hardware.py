"""What this machine can run fast: its CPU (name and SIMD flags), whether bf16 autocast works and
pays here, and the float32 matmul speed that every speed figure is printed against."""

from __future__ import annotations

import functools
import time

import torch

from melody_lc.choices import PRECISIONS
from melody_lc.melody.errors import PrecisionError


def cpu_has_amx() -> bool:
    return "amx_bf16" in _cpu_flags()


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 autocast roughly doubles training and sampling speed (measured)."""
    flags = _cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.startswith("flags")), "")
        return set(line.split(":", 1)[-1].split())
    except OSError:
        return set()


def describe_hardware() -> str:
    """'AMD EPYC (2 threads, avx512_bf16)' or the GPU's name: recorded in checkpoints and model cards."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    name = "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    flags = _cpu_flags()
    simd = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    return f"{name} ({torch.get_num_threads()} threads, {simd})"


@functools.cache
def bf16_lstm_works(device_type: str = "cpu") -> bool:
    """Whether torch can run an LSTM under bf16 autocast here: on CPUs without AVX-512 BF16 (AVX2
    only) torch's oneDNN has no bf16 LSTM and raises. Probed once with a tiny LSTM."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4, batch_first=True)(torch.zeros(1, 2, 4))
        return True
    except RuntimeError:
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to autocast to bf16: "auto" where it is fast and works, "bf16" where it works (else a
    :class:`PrecisionError`), "fp32" never."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    if precision == "auto":
        return (device.type == "cuda" or cpu_has_fast_bf16()) and bf16_lstm_works(device.type)
    if precision == "bf16" and not bf16_lstm_works(device.type):
        raise PrecisionError(
            f"bf16 is not available on this {'GPU' if device.type == 'cuda' else 'CPU'}: torch has "
            "no bf16 LSTM here (it needs AVX-512 BF16 or AMX); use --precision fp32 or auto"
        )
    return precision == "bf16"


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    """float32 matmul GFLOP/s of this machine with torch's current threads (the speed reference)."""
    g = torch.Generator().manual_seed(0)  # not the global RNG: a resumed run must draw what it would have
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9
