"""Service configuration: environment variables prefixed ``LSR_`` (or a ``.env`` file)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    onnx_queries: bool = Field(True, description="dense and multivector queries through the fused "
                               "float32 ONNX Runtime graph: PyTorch's vectors to float rounding, "
                               "a lone query ~2.4x faster; false: PyTorch")
    encode_batch_size: int = Field(32, ge=1)
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads per encoder call "
                                      "(default: torch's; concurrent queries share batches anyway)")
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

    @property
    def admin_key_set(self) -> frozenset[str]:
        return _keys(self.api_keys)

    @property
    def read_key_set(self) -> frozenset[str]:
        return _keys(self.read_keys)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.admin_key_set or self.read_key_set)
