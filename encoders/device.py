"""Where torch encoders and trainers run: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

One process-wide default (the service's ``LSR_DEVICE`` setting sets it through
``service.settings.Settings.apply``; ``python -m encoders.*`` and ``lsr train`` take
``--device``), which every encoder uses unless it is given its own ``device=``. ``auto`` is the
first of cuda, mps, cpu that this machine has. Asking for a device the machine lacks is an error
naming what it has, never a silent fall back to the CPU.

On an accelerator, documents are encoded in half precision (bf16 where the GPU supports it,
else fp16) with the vocabulary projection kept in float32; queries and the CPU stay float32.
"""
from __future__ import annotations

import re

import torch

_SPEC_RE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]{1,2})?)$")
_default = "auto"


class DeviceError(ValueError):
    """A device setting that is malformed or names hardware this machine does not have."""


def check_spec(spec: str) -> str:
    """The spec, lower-cased, if it is well-formed (not whether the machine has it)."""
    s = str(spec).strip().lower()
    if not _SPEC_RE.fullmatch(s):
        raise DeviceError(f"device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    return s


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve(spec: str | torch.device | None = None) -> torch.device:
    """The torch device for a spec (None: the process default), checked against this machine."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = check_spec(_default if spec is None else spec)
    if s == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if s.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {s!r}: torch.cuda is not available here (torch {torch.__version__}"
                              f"{', a CPU-only build' if torch.version.cuda is None else ''}); "
                              "use cpu or auto")
        index = int(s.split(":")[1]) if ":" in s else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {s!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if s == "mps" and not _mps_available():
        raise DeviceError("device 'mps': torch.backends.mps is not available here; use cpu or auto")
    return torch.device(s)


def set_default(spec: str) -> torch.device:
    """Set the process default (checked first: a bad setting fails at start, not at first use)."""
    global _default
    device = resolve(spec)
    _default = check_spec(spec)
    return device


def default_spec() -> str:
    return _default


def half_dtype(device: torch.device) -> torch.dtype | None:
    """The document-encoding dtype on this device: bf16 / fp16 on an accelerator, None on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for a forward pass on an accelerator; a no-op context on the CPU."""
    if dtype is None or device.type == "cpu":
        import contextlib
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# Token budgets of a document batch (encoders/batching.py, length_sorted_batches): on the CPU
# the budget only splits batches of long texts (32 x 256 tokens, as batches of 32 were before);
# an accelerator takes far larger batches, bounded by tokens rather than by texts.
CPU_BATCH_TOKENS = 32 * 256
GPU_BATCH_TOKENS = 64 * 1024
GPU_MAX_BATCH = 1024


def batch_plan(device: torch.device, batch_size: int, batch_tokens: int | None) -> tuple[int, int]:
    """(most texts per batch, most padded tokens per batch) for documents on ``device``."""
    if device.type == "cpu":
        return batch_size, batch_tokens or max(CPU_BATCH_TOKENS, batch_size)
    return max(batch_size, GPU_MAX_BATCH), batch_tokens or GPU_BATCH_TOKENS
