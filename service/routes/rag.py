from __future__ import annotations

import base64
import json
import re

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from encoders import registry

from .. import lexical
from ..auth import AuthFirstRoute, require_read
from ..encoder_cache import ENCODERS, available_models
from ..errors import BadRequest, NotFound, TooLarge
from ..schemas import EmbeddingsRequest, EncodeRequest, ModelList, ModelOut

_PARAM_RE = re.compile(r"^(input|model|dimensions|encoding_format|texts|encoder|kind|top_k)\b")


def _openai_error(response: JSONResponse) -> JSONResponse:
    """The app's error answer, plus OpenAI's error object, so that OpenAI clients show the
    message (they read error.message) and the field (error.param); `detail` stays."""
    body = json.loads(response.body)
    message = str(body.get("detail"))
    if body.get("errors"):
        loc = [x for x in body["errors"][0].get("loc", []) if x != "body"]
        param = loc[0] if loc else None
    else:
        m = _PARAM_RE.match(message)
        param = m.group(1) if m else ("model" if "model" in message and response.status_code == 400 else None)
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            413: "invalid_request_error"}.get(response.status_code, "invalid_request_error")
    body["error"] = {"message": message, "type": kind if response.status_code < 500 else "server_error",
                     "param": param, "code": None}
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return JSONResponse(body, status_code=response.status_code, headers=headers)


class OpenAIRoute(AuthFirstRoute):
    """Answers errors as the app does (its exception handlers), in OpenAI's error shape too."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except Exception as exc:
                found = next((request.app.exception_handlers[c] for c in type(exc).__mro__
                              if c in request.app.exception_handlers and c not in (Exception, BaseException)),
                             None)
                if found is None:
                    raise  # a bug: the app's 500 handler answers
                response = await found(request, exc)
                return _openai_error(response) if isinstance(response, JSONResponse) else response
        return route


router = APIRouter(tags=["rag"], route_class=OpenAIRoute)


def _check_texts(texts: list[str], limit: int) -> None:
    if not texts:
        raise BadRequest("input is empty: give at least one text")
    if len(texts) > limit:
        raise TooLarge(f"{len(texts)} texts in one request; the limit is {limit}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequest(f"input[{i}] must be a string")
        if not t.strip():
            raise BadRequest(f"input[{i}] is empty")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"input[{i}] is not valid Unicode (lone surrogate)") from None


def _load(kind: str, name: str):
    return getattr(ENCODERS, kind)(name)  # EncoderLoadError is a 400 naming the model


def _sparse_queries(enc, name: str, texts: list[str]):
    """Sparse query vectors; an inference-free model weighs its query tokens by a collection's
    live IDF, so outside a collection it has no query vectors to give."""
    if getattr(enc, "live_idf", False):
        raise BadRequest(f"model {name!r} is inference-free with the IDF of each collection: its query "
                         "vectors exist only against a collection (search it, with explain for the "
                         "weights); documents encode here")
    return enc.encode_queries(texts)


def _inputs(raw) -> tuple[list[str] | None, list[list[int]] | None]:
    """The request's input as texts, or as token-id lists (one per input)."""
    if isinstance(raw, str):
        return [raw], None
    if raw and all(isinstance(x, int) for x in raw):
        return None, [list(raw)]
    if raw and all(isinstance(x, list) for x in raw):
        return None, [list(x) for x in raw]
    return list(raw), None


def _decode_ids(tokenizer, model: str, ids: list[list[int]], limit: int) -> list[str]:
    """Token ids of the model's own tokenizer, decoded to the texts they spell."""
    if not ids:
        raise BadRequest("input is empty: give at least one text")
    if len(ids) > limit:
        raise TooLarge(f"{len(ids)} inputs in one request; the limit is {limit}")
    vocab = len(tokenizer)
    texts = []
    for i, row in enumerate(ids):
        if not row:
            raise BadRequest(f"input[{i}] is an empty list of token ids")
        bad = next((t for t in row if t >= vocab), None)
        if bad is not None:
            raise BadRequest(f"input[{i}]: token id {bad} is outside the vocabulary of model "
                             f"{model!r} (0..{vocab - 1}); token ids are the model's own tokenizer's")
        text = tokenizer.decode(row, skip_special_tokens=True).strip()
        if not text:
            raise BadRequest(f"input[{i}] holds only special tokens")
        texts.append(text)
    return texts


def _as_base64(v: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")


def _truncate(vecs: np.ndarray, dimensions: int | None, model: str, dim: int) -> np.ndarray:
    """OpenAI's `dimensions`: the first n dimensions, L2-renormalised (Matryoshka-style)."""
    if dimensions is None or dimensions == dim:
        return vecs
    if dimensions > dim:
        raise BadRequest(f"dimensions: {dimensions} is more than model {model!r} has ({dim})")
    cut = np.asarray(vecs, dtype=np.float32)[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.where(norms > 0, norms, 1.0)


@router.post("/v1/embeddings", dependencies=[Depends(require_read)])
def embeddings(body: EmbeddingsRequest, request: Request):
    """OpenAI-compatible embeddings (the `openai` client works as is: base64 or float
    encoding, token-id input, `dimensions`). Dense by default; ``encoding_format: "sparse"``
    (an extension) returns SPLADE vectors as ``{"indices": [...], "values": [...]}``."""
    s = request.app.state.settings
    texts, ids = _inputs(body.input)
    if texts is not None:
        _check_texts(texts, s.max_batch_texts)
    if body.encoding_format == "sparse":
        if body.dimensions is not None:
            raise BadRequest("dimensions: applies to dense embeddings only; a sparse vector has "
                             "no dimensions to cut (use /encode with top_k to keep its largest terms)")
        name = s.sparse_encoder if body.model in (None, "sparse") else body.model
        enc = _load("sparse", name)
        tokenizer = enc.tokenizer
        texts = texts if ids is None else _decode_ids(tokenizer, name, ids, s.max_batch_texts)
        m = _sparse_queries(enc, name, texts)
        data = [{"object": "embedding", "index": i,
                 "embedding": {"indices": m[i].indices.tolist(), "values": m[i].data.tolist()}}
                for i in range(len(texts))]
    else:
        name = body.model or s.dense_encoder
        enc = _load("dense", name)
        tokenizer = enc.backbone.tokenizer
        texts = texts if ids is None else _decode_ids(tokenizer, name, ids, s.max_batch_texts)
        vecs = _truncate(enc.encode_queries(texts), body.dimensions, name, enc.dim)
        pack = _as_base64 if body.encoding_format == "base64" else (lambda v: v.tolist())
        data = [{"object": "embedding", "index": i, "embedding": pack(v)} for i, v in enumerate(vecs)]
    if ids is not None:
        n_tokens = sum(len(row) for row in ids)
    else:
        n_tokens = sum(len(t) for t in tokenizer(texts, truncation=True)["input_ids"])
    return {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}


def _model_kinds(name: str, settings) -> list[str]:
    """What a registered model serves: the server's configured roles, else its registry kind's
    (any sparse kind is "sparse"; a plain encoder directory is dense and multivector)."""
    kinds = [k for k, default in (("sparse", settings.sparse_encoder), ("dense", settings.dense_encoder),
                                  ("multivector", settings.multivector_encoder)) if default == name]
    if kinds:
        return kinds
    spec = registry.get(name)
    if spec is None:
        return []
    return [r for r in ("sparse", "dense", "multivector") if spec.serves(r)]


def _embedding_models() -> list[str]:
    """The models /v1/embeddings encodes queries with: not an inference-free model whose query
    IDF comes from each collection (GET /models lists every model)."""
    return [n for n in available_models()
            if not (registry.get(n).kind == "inference-free" and "idf" not in registry.get(n).files)]


def _model(name: str, settings) -> dict:
    spec = registry.get(name)
    try:
        created = int((spec.path / "config.json" if (spec.path / "config.json").is_file()
                       else spec.path / registry.MANIFEST).stat().st_mtime)
    except (OSError, TypeError, AttributeError):  # built in: no files
        created = 0
    return {"id": name, "object": "model", "created": created, "owned_by": "lsr-search",
            "kinds": _model_kinds(name, settings)}


@router.get("/v1/models", response_model=ModelList, dependencies=[Depends(require_read)])
def list_models(request: Request):
    """The models this server can encode with (its models cache), in OpenAI's list format;
    `kinds` says which of them are dense, sparse (SPLADE) or multivector."""
    s = request.app.state.settings
    return {"object": "list", "data": [_model(n, s) for n in _embedding_models()]}


@router.get("/v1/models/{model_id:path}", response_model=ModelOut, dependencies=[Depends(require_read)])
def get_model(model_id: str, request: Request):
    names = _embedding_models()
    if model_id not in names:
        raise NotFound(f"model {model_id!r} not found; models on this server: {names}")
    return _model(model_id, request.app.state.settings)


@router.post("/encode", dependencies=[Depends(require_read)])
def encode(body: EncodeRequest, request: Request):
    """Sparse vectors as term -> weight maps (largest first), from SPLADE or BM25."""
    s = request.app.state.settings
    _check_texts(body.texts, s.max_batch_texts)
    name = body.encoder or s.sparse_encoder
    if name == "bm25":
        if body.kind == "documents":
            m, _ = lexical.encode_documents(body.texts)
        else:
            m = None
        vectors = []
        for i, text in enumerate(body.texts):
            words = lexical.token_terms(text)
            if m is not None:
                row = m[i]
                pairs = [(words[int(t)], float(w)) for t, w in zip(row.indices, row.data)]
            else:
                counts, _ = lexical.counts(text)
                pairs = [(words[t], float(c)) for t, c in counts.items()]
            pairs.sort(key=lambda x: (-x[1], x[0]))
            vectors.append(dict(pairs[:body.top_k] if body.top_k else pairs))
        return {"encoder": "bm25", "vectors": vectors}
    enc = _load("sparse", name)
    m = enc.encode_documents(body.texts) if body.kind == "documents" else _sparse_queries(enc, name, body.texts)
    vectors = []
    for i in range(m.shape[0]):
        pairs = enc.decode(m[i])
        vectors.append(dict(pairs[:body.top_k] if body.top_k else pairs))
    return {"encoder": name, "vectors": vectors}
