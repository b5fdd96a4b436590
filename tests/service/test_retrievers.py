"""LangChain and LlamaIndex retrievers against the real app (optional extras: skipped without them)."""
import pytest


def test_langchain_retriever(client):
    pytest.importorskip("langchain_core")
    from service.retrievers.langchain import LsrRetriever
    r = LsrRetriever(collection="demo", k=3, http_client=client, search_options={"filter": {"topic": "energy"}})
    docs = r.invoke("wind turbines and electricity")
    assert len(docs) == 3 and docs[0].id == "energy-02"
    assert "Wind turbines" in docs[0].page_content
    assert all(d.metadata["topic"] == "energy" and "score" in d.metadata for d in docs)
    with pytest.raises(RuntimeError, match="404"):
        LsrRetriever(collection="missing", http_client=client).invoke("x")


def test_llamaindex_retriever(client):
    pytest.importorskip("llama_index.core")
    from service.retrievers.llamaindex import LsrLlamaRetriever
    nodes = LsrLlamaRetriever("demo", k=2, mode="sparse", http_client=client).retrieve("baking bread")
    assert [n.node.node_id for n in nodes][0] == "cooking-01"
    assert nodes[0].score >= nodes[1].score and nodes[0].node.metadata["topic"] == "cooking"
