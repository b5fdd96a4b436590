"""nDCG@k and recall@k with trec_eval's formulas (ndcg_cut, recall), as pure functions.

trec_eval details reproduced: results are ranked by score descending, ties broken by doc id
in descending string order; gains are the qrels relevance values (linear, not 2^rel - 1);
only relevance > 0 counts as relevant; the ideal DCG uses the judged relevances. Means are taken
over every query in the qrels, scoring a query without results as 0 (trec_eval -c), so an
encoder is not rewarded for returning nothing.
"""

from __future__ import annotations

import math

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def ranked(results: dict[str, float]) -> list[str]:
    """Doc ids in trec_eval order: score descending, then doc id descending."""
    return [d for d, _ in sorted(results.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def ndcg_at_k(results: dict[str, float], rels: dict[str, int], k: int) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked(results)[:k])
              if rels.get(d, 0) > 0)
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(results: dict[str, float], rels: dict[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked(results)[:k])) / len(relevant)


def per_query(run: Run, qrels: Qrels, ndcg_k: int = 10, recall_k: int = 100) -> dict[str, dict[str, float]]:
    return {q: {f"nDCG@{ndcg_k}": ndcg_at_k(run.get(q, {}), rels, ndcg_k),
                f"R@{recall_k}": recall_at_k(run.get(q, {}), rels, recall_k)}
            for q, rels in qrels.items()}


def evaluate(run: Run, qrels: Qrels, ndcg_k: int = 10, recall_k: int = 100) -> dict[str, float]:
    """Mean nDCG@ndcg_k and R@recall_k over all queries in ``qrels``."""
    if not qrels:
        raise ValueError("qrels is empty")
    scores = per_query(run, qrels, ndcg_k, recall_k)
    names = [f"nDCG@{ndcg_k}", f"R@{recall_k}"]
    return {m: sum(s[m] for s in scores.values()) / len(scores) for m in names}


def write_trec_run(path, run: Run, tag: str = "lsr") -> int:
    """Write ``run`` as a TREC run file (``qid Q0 docid rank score tag``, one line a result,
    rank from 1 in trec_eval order) that pytrec_eval, ir-measures, ranx and trec_eval read;
    returns the lines written. Written to a temporary file and renamed: never half a run."""
    import os
    from pathlib import Path
    path = Path(path)
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"a run tag is one word, got {tag!r}")
    lines = []
    for qid, results in run.items():
        if any(c.isspace() for c in qid):
            raise ValueError(f"query id {qid!r} contains whitespace: not representable in a TREC run")
        for rank, d in enumerate(ranked(results), 1):
            if any(c.isspace() for c in d):
                raise ValueError(f"document id {d!r} contains whitespace: not representable in a TREC run")
            lines.append(f"{qid} Q0 {d} {rank} {results[d]:.9g} {tag}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, path)
    return len(lines)
