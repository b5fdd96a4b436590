"""The C++ kernels for the indexes (loaded by encoders.native, which picks the build variant).

When the extension is missing the indexes fall back to their Numba kernels, which compute
identical results more slowly; the fallback is announced once with a warning.
"""
from __future__ import annotations

import warnings

from encoders.native import IMPORT_ERROR as _import_error, MODULE as _native, variant

__all__ = ["native_module", "resolve_backend", "variant"]

_warned = False


def native_module():
    """The extension module, or None (with a one-time warning) when it is not importable."""
    global _warned
    if _native is None and not _warned:
        warnings.warn(f"lsr_native C++ extension not available ({_import_error}); using the slower "
                      "Numba kernels. Reinstall with `make install` to build it.", RuntimeWarning,
                      stacklevel=3)
        _warned = True
    return _native


def resolve_backend(backend: str) -> str:
    """'auto' -> 'native' when the extension loads, else 'numba'."""
    if backend not in ("auto", "native", "numba"):
        raise ValueError(f"backend must be 'auto', 'native' or 'numba', got {backend!r}")
    if backend == "numba":
        return "numba"
    if native_module() is None:
        if backend == "native":
            raise RuntimeError(f"the lsr_native extension is not available: {_import_error}")
        return "numba"
    return "native"
