"""GET /models and GET /models/{name}: the model registry (service/models.py, encoders/registry.py)."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from encoders.registry import KINDS

from .. import models
from ..auth import AuthFirstRoute, require_read
from ..encoder_cache import ENCODERS
from ..errors import NotFound

router = APIRouter(tags=["models"], route_class=AuthFirstRoute)

Kind = Literal[KINDS]  # type: ignore[valid-type]
Role = Literal["sparse", "bm25", "dense", "multivector"]

EXAMPLE = {"name": "splade-tiny-inference-free", "kind": "inference-free", "kinds": ["inference-free"],
           "base": "splade-tiny", "files": {}, "options": {},
           "description": "inference-free: documents by splade-tiny, queries tokenised and weighted by the "
                          "collection's live IDF (built in)",
           "roles": ["sparse"], "dimension": 30522, "device": "cpu",
           "query_side": "tokenizer + IDF (no model)", "loaded": [], "default_for": [], "idf": "collection"}


class ModelInfo(BaseModel):
    """A registered model. Collections name it in ``sparse_encoder`` (any sparse kind),
    ``dense_encoder`` or ``multivector_encoder``; ``bm25-hashed`` is the built-in BM25 field."""
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})
    name: str
    kind: Kind = Field(description="splade, echo-splade, inference-free, csr (sparse kinds), bm25, dense "
                       "or multivector")
    kinds: list[Kind] = Field(description="every kind it serves (a plain encoder directory: dense and "
                              "multivector)")
    base: str | None = Field(None, description="the registered model whose weights it uses")
    files: dict[str, str] = Field({}, description="its files by role (idf, checkpoint, projection, vocabulary)")
    options: dict = Field({}, description="encoder options from its lsr-model.json")
    description: str = ""
    roles: list[Role] = Field(description="the collection field(s) it can fill")
    dimension: int | None = Field(description="vector dimension (vocabulary, latents or hidden size); null "
                                  "where only loading the model tells")
    device: str = Field(description="where its documents are encoded (LSR_DEVICE): cpu, cuda:N, mps")
    query_side: str = Field(description="what encodes a query: the model, or a tokenizer and IDF only")
    loaded: list[Role] = Field(description="roles it is loaded in, in this process")
    default_for: list[Role] = Field(description="roles it is this server's default for")
    idf: Literal["file", "collection"] | None = Field(
        None, description="inference-free: query IDF from the model's file or the collection's live statistics")


class ModelListing(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"models": [EXAMPLE], "device": "cpu"}]})
    models: list[ModelInfo]
    device: str = Field(description="the server's device setting (LSR_DEVICE) as resolved here")


def _listing(request: Request) -> list[dict]:
    return models.describe(ENCODERS, models.settings_defaults(request.app.state.settings))


@router.get("/models", response_model=ModelListing, dependencies=[Depends(require_read)])
def list_models(request: Request):
    """Every model this server can encode with: the registry (built-in entries and the models
    cache, ``LSR_MODELS_DIR``, where a directory's ``lsr-model.json`` gives its kind), each with
    kind, dimension and device. Clients name these models, never paths."""
    from encoders import device as devices
    try:
        device = str(devices.resolve(None))
    except devices.DeviceError as exc:
        device = f"unavailable ({exc})"
    return {"models": _listing(request), "device": device}


@router.get("/models/{name}", response_model=ModelInfo, dependencies=[Depends(require_read)])
def get_model(name: str, request: Request):
    """One registered model."""
    for m in _listing(request):
        if m["name"] == name:
            return m
    raise NotFound(f"model {name!r} not found; GET /models lists this server's models")
