"""Service configuration: environment variables prefixed ``LSR_`` (or a ``.env`` file).

Every ``LSR_*`` variable is a setting below or one of ``OTHER_VARIABLES`` (read by code outside
Settings); any other is a mistake — a typo would otherwise leave a default silently in force —
so constructing Settings (the server, ``lsr serve``, the CLI's local commands) fails naming it
and the settings it resembles.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# LSR_* variables that code outside Settings reads, with the reader: the one list of them
# (a new one goes here, or it is refused at start like a typo).
OTHER_VARIABLES: dict[str, str] = {
    "LSR_PRELOAD": "service/app.py app_from_env: `lsr serve --workers N --preload` tells its workers",
    "LSR_URL": "service/cli.py: the server the CLI talks to (like --url)",
    "LSR_API_KEY": "service/cli.py: the key the CLI sends to that server",
    "LSR_ONNX_CACHE": "encoders/onnx_graphs.py: where converted ONNX graphs are kept",
    "LSR_CRASH_AT": "indexer/crashpoints.py: crash tests (kill the process at write step N)",
    "LSR_CONSOLE_SCREENSHOTS": "tests/service/test_console.py: save the README's screenshots there",
}
PREFIX = "LSR_"


class UnknownSettingError(ValueError):
    """An LSR_* variable that is neither a setting nor one of OTHER_VARIABLES."""


def known_variables() -> list[str]:
    """Every LSR_* variable this project reads."""
    return sorted({PREFIX + name.upper() for name in Settings.model_fields} | set(OTHER_VARIABLES))


def check_variables(names: Iterable[str], where: str = "the environment") -> None:
    """UnknownSettingError naming each unknown LSR_* name (matched case-insensitively, as the
    settings are) and the known ones it resembles."""
    known = known_variables()
    unknown = sorted({n for n in names if n.upper().startswith(PREFIX) and n.upper() not in known})
    if not unknown:
        return
    parts = []
    for name in unknown:
        # compared without the prefix, which every name shares and would make all look alike
        close = difflib.get_close_matches(name.upper()[len(PREFIX):], [k[len(PREFIX):] for k in known],
                                          n=3, cutoff=0.6)
        close = [PREFIX + c for c in close]
        parts.append(name + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    raise UnknownSettingError(
        f"unknown setting{'s' if len(unknown) > 1 else ''} in {where}: {', '.join(parts)}. Every "
        f"LSR_* variable must be one of: {', '.join(known)} (service/README.md, \"Settings\")")


def _keys(raw: str) -> frozenset[str]:
    return frozenset(k.strip() for k in raw.split(",") if k.strip())


class Settings(BaseSettings):
    """Every knob of the service; see service/README.md for the table."""

    model_config = SettingsConfigDict(env_prefix="LSR_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data/collections"), description="where collections and job state live")
    api_keys: str = Field("", description="comma-separated admin keys (read and write)")
    read_keys: str = Field("", description="comma-separated read-only keys")
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1, description="larger request bodies get 413")
    max_batch_docs: int = Field(1000, ge=1, description="documents per upsert request")
    max_batch_texts: int = Field(256, ge=1, description="texts per /encode or /v1/embeddings request")
    max_k: int = Field(1000, ge=1, description="largest k + offset a search may ask for")
    models_dir: Path | None = Field(None, description="model cache (sets LSR_MODELS_DIR for encoders)")
    sparse_encoder: str = "splade-tiny"
    dense_encoder: str = "all-MiniLM-L6-v2"
    multivector_encoder: str = "all-MiniLM-L6-v2"
    dense_int8: bool = Field(False, description="dense models in ONNX Runtime: documents through the "
                             "fused int8 graph (~1.6x faster indexing on CPU, approximate), queries "
                             "through the fused float32 graph")
    onnx_queries: bool = Field(True, description="SPLADE, dense and multivector queries through the "
                               "fused float32 ONNX Runtime graph: PyTorch's vectors to float rounding, "
                               "a lone query ~2.4x faster; false: PyTorch")
    query_int8: bool = Field(False, description="dense and multivector queries through the fused int8 "
                             "ONNX graph instead (needs onnx_queries, CPU): ~3.5x less CPU per MiniLM "
                             "query, approximate (SciFact train nDCG@10: -0.0045 dense search, -0.0007 "
                             "reranked hybrid; BENCHMARKS.md)")
    encode_batch_size: int = Field(32, ge=1)
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads per encoder call "
                                      "(default: torch's; concurrent queries share batches anyway)")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:[0-9]{1,2})?)$",
                        description="where every torch encoder and trainer runs: auto (cuda, then mps, "
                        "then cpu), cpu, cuda, cuda:N or mps; a device this machine lacks is an error at "
                        "start. On a GPU documents are encoded in bf16/fp16 with the SPLADE head in torch "
                        "(the fused C++ head is the CPU's)")
    job_chunk_docs: int = Field(64, ge=1, description="documents encoded and committed per job step")
    import_dir: Path | None = Field(None, description="server directory that job sources may be "
                                    "read from (unset: jobs index uploaded files only)")
    wal_recovery: Literal["tolerate_torn_tail", "point_in_time", "absolute_consistency"] = Field(
        "tolerate_torn_tail", description="what opening a collection does with a bad write-ahead "
        "log record (RocksDB's recovery modes); dropped records go to <collection>/quarantine/")
    refresh_ms: int = Field(1000, ge=10, description="how often a follower process (not the data "
                            "directory's writer) looks for the writer's changes")
    metrics_key: str = Field("", description="key that /metrics requires (X-API-Key or Bearer); "
                             "unset: /metrics takes any read or admin key when auth is on")
    log_format: Literal["text", "json"] = Field("text", description="json: the service's logs as one JSON "
                                                 "object per line, with the request id (observability.py)")
    slow_search_ms: float | None = Field(None, ge=0, description="log searches that take at least this "
                                         "long (logger lsr.slowlog, with the query and the server's split)")

    @model_validator(mode="after")
    def _int8_queries_need_onnx(self) -> Settings:
        if self.query_int8 and not self.onnx_queries:
            raise ValueError("query_int8 runs queries through the int8 ONNX graph: it needs onnx_queries=true")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        """The default sources, after refusing unknown LSR_* variables in either of the
        environment and the .env file (when one is read)."""
        check_variables(os.environ, "the environment")
        dotenv_vars: Mapping = getattr(dotenv_settings, "env_vars", None) or {}  # lower-cased names
        check_variables([name.upper() for name in dotenv_vars], "the .env file")
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    def apply(self) -> None:
        """What the settings change process-wide — the models cache, torch's intra-op threads,
        the dense encoders' ONNX paths — for the server (create_app) and the CLI's local
        commands alike."""
        if self.models_dir is not None:
            os.environ["LSR_MODELS_DIR"] = str(self.models_dir)
        if self.torch_threads is not None:
            import torch
            torch.set_num_threads(self.torch_threads)
        from encoders import device as devices
        devices.set_default(self.device)  # DeviceError (a ValueError) names what the machine has
        where = devices.resolve(None)
        if self.query_int8 and where.type != "cpu":
            raise devices.DeviceError(f"query_int8: int8 (ONNX Runtime) queries run on the CPU, and "
                                      f"device {self.device!r} is {where}")
        from .encoder_cache import ENCODERS
        ENCODERS.dense_int8 = self.dense_int8
        ENCODERS.onnx_queries = self.onnx_queries
        ENCODERS.query_int8 = self.query_int8

    @property
    def admin_key_set(self) -> frozenset[str]:
        return _keys(self.api_keys)

    @property
    def read_key_set(self) -> frozenset[str]:
        return _keys(self.read_keys)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.admin_key_set or self.read_key_set)
