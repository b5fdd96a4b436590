"""The one loader of the C++ kernels built from native/, for encoders and indexer alike.

`make install` builds ``lsr_native``, tuned for the build machine (-march=native). A portable
build (CMake LSR_PORTABLE=ON, as in the Docker image) builds ``lsr_native_v3`` (x86-64-v3:
AVX2, FMA, BMI...) and ``lsr_native_v2`` instead. A module compiled for instructions that the
CPU lacks dies of SIGILL at its first kernel call, so a portable variant is imported only when
/proc/cpuinfo lists every feature of its level. When none loads, callers use their Numba or
torch fallbacks.

It lives in encoders, the bottom layer, so that indexer can reuse it without an upward import.
"""
from __future__ import annotations

import importlib
import platform
from collections.abc import Iterable
from types import ModuleType

# Features of the x86-64 micro-architecture levels (x86-64 psABI) as /proc/cpuinfo names them:
# "pni" is SSE3, "abm" is LZCNT; "xsave" is set only when the kernel enables AVX state saving.
X86_64_V2 = frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"})
X86_64_V3 = X86_64_V2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}


def cpu_flags(cpuinfo_lines: Iterable[str]) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo (empty when none is listed)."""
    for line in cpuinfo_lines:
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def candidates(machine: str, flags: frozenset[str]) -> list[tuple[str, str]]:
    """(module, variant) pairs to try, best first, for this machine and CPU flags."""
    # lsr_native first: it exists only when built on this machine (or, by a portable build, for
    # a non-x86 target's baseline).
    order = [("lsr_native", "native")]
    if machine.lower() in ("x86_64", "amd64"):
        if X86_64_V3 <= flags:
            order.append(("lsr_native_v3", "x86-64-v3"))
        if X86_64_V2 <= flags:
            order.append(("lsr_native_v2", "x86-64-v2"))
    return order


def _host_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return cpu_flags(f)
    except OSError:  # not Linux: no portable variant can be proven safe
        return frozenset()


def _load() -> tuple[ModuleType | None, str | None, str | None]:
    errors = []
    for name, variant in candidates(platform.machine(), _host_flags()):
        try:
            return importlib.import_module(name), variant, None
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    return None, None, "; ".join(errors)


MODULE, VARIANT, IMPORT_ERROR = _load()


def variant() -> str | None:
    """Which build is loaded: "native", "x86-64-v3", "x86-64-v2", or None (no extension)."""
    return VARIANT
