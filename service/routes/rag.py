from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .. import lexical
from ..auth import AuthFirstRoute, require_read
from ..encoder_cache import ENCODERS
from ..errors import BadRequest, TooLarge
from ..schemas import EmbeddingsRequest, EncodeRequest

router = APIRouter(tags=["rag"], route_class=AuthFirstRoute)


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


@router.post("/v1/embeddings", dependencies=[Depends(require_read)])
def embeddings(body: EmbeddingsRequest, request: Request):
    """OpenAI-compatible embeddings. Dense by default; ``encoding_format: "sparse"`` (an
    extension) returns SPLADE vectors as ``{"indices": [...], "values": [...]}``."""
    s = request.app.state.settings
    texts = [body.input] if isinstance(body.input, str) else body.input
    _check_texts(texts, s.max_batch_texts)
    if body.encoding_format == "sparse":
        name = s.sparse_encoder if body.model in (None, "sparse") else body.model
        enc = _load("sparse", name)
        m = enc.encode_queries(texts)
        data = [{"object": "embedding", "index": i,
                 "embedding": {"indices": m[i].indices.tolist(), "values": m[i].data.tolist()}}
                for i in range(len(texts))]
        tokenizer = enc.tokenizer
    else:
        name = body.model or s.dense_encoder
        enc = _load("dense", name)
        vecs = enc.encode_queries(texts)
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)]
        tokenizer = enc.backbone.tokenizer
    n_tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"])
    return {"object": "list", "data": data, "model": name,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}


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
    m = enc.encode_documents(body.texts) if body.kind == "documents" else enc.encode_queries(body.texts)
    vectors = []
    for i in range(m.shape[0]):
        pairs = enc.decode(m[i])
        vectors.append(dict(pairs[:body.top_k] if body.top_k else pairs))
    return {"encoder": name, "vectors": vectors}
