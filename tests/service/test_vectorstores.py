"""LangChain and LlamaIndex vector stores against a real server (uvicorn on a loopback port, with
an API key): add texts, delete (by ids, by filter, by source document), get, similarity search
with filters, as a retriever."""
import pytest


from .live_server import serve_new

KEY = "admin"
TEXTS = [
    ("wind", "Wind turbines turn moving air into electricity.", {"topic": "energy", "year": 2019}),
    ("solar", "Solar panels convert sunlight into electric power.", {"topic": "energy", "year": 2023}),
    ("bread", "Sourdough bread rises with a wild yeast starter.", {"topic": "cooking", "year": 2021}),
    ("pasta", "Fresh pasta needs flour, eggs and a little patience.", {"topic": "cooking", "year": 2015}),
    ("goal", "The striker scored the winning goal in extra time.", {"topic": "sports", "year": 2022}),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serve_new(tmp_path_factory.mktemp("data"), api_keys=KEY) as u:
        yield u


def test_langchain_vector_store(url):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from service.retrievers.client import LsrApiError
    from service.retrievers.langchain import LsrVectorStore
    store = LsrVectorStore.from_texts([t for _, t, _ in TEXTS], None, [m for _, _, m in TEXTS],
                                      ids=[i for i, _, _ in TEXTS], collection="lc", base_url=url,
                                      api_key=KEY)
    docs = store.similarity_search("how is electricity generated from wind", k=2)
    assert docs[0].id == "wind" and docs[0].metadata == {"topic": "energy", "year": 2019}
    assert "Wind turbines" in docs[0].page_content
    # filters in the REST syntax: equality, ranges, in
    hits = store.similarity_search("electric power", k=5, filter={"topic": "energy", "year": {"gte": 2020}})
    assert [d.id for d in hits] == ["solar"]
    hits = store.similarity_search("food", k=5, filter={"topic": {"in": ["cooking"]}}, mode="bm25")
    assert {d.id for d in hits} <= {"bread", "pasta"}
    scored = store.similarity_search_with_score("sourdough starter", k=3, mode="sparse")
    assert scored[0][0].id == "bread" and scored[0][1] >= scored[-1][1]
    # new texts get UUIDs; documents keep their ids; an existing id is replaced
    new_ids = store.add_texts(["Hydroelectric dams store energy in reservoirs."], [{"topic": "energy"}])
    assert len(new_ids) == 1 and len(new_ids[0]) == 36
    assert store.add_documents([Document(page_content="Sourdough bread needs time to rise.", id="bread",
                                         metadata={"topic": "cooking", "year": 2024})]) == ["bread"]
    (bread,) = store.get_by_ids(["bread"])
    assert bread.page_content == "Sourdough bread needs time to rise." and bread.metadata["year"] == 2024
    assert [d.id for d in store.get_by_ids(["nope", "wind"])] == ["wind"]
    # as a retriever
    got = store.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "sports"}}).invoke("match result")
    assert [d.id for d in got] == ["goal"]
    # deletes: by ids, by filter
    assert store.delete(["goal"]) is True
    assert store.get_by_ids(["goal"]) == []
    assert store.delete(filter={"topic": "cooking"}) is True
    assert store.similarity_search("bread pasta", k=5, filter={"topic": "cooking"}) == []
    assert [d.id for d in store.get_by_ids([i for i, _, _ in TEXTS])] == ["wind", "solar"]
    # bad input: the server's message, naming the field
    with pytest.raises(LsrApiError, match="400.*filter"):
        store.similarity_search("x", filter={"year": {"near": 3}})
    with pytest.raises(ValueError, match="metadatas"):
        store.add_texts(["a", "b"], [{}])
    # relevance scores: bounded in dense mode only
    dense = LsrVectorStore("lc", url, KEY, mode="dense")
    rel = dense.similarity_search_with_relevance_scores("solar energy", k=2)
    assert rel[0][0].id == "solar" and all(0 <= s <= 1 for _, s in rel)
    with pytest.raises(NotImplementedError, match="dense"):
        store.similarity_search_with_relevance_scores("solar energy", k=2)
    # ids=None deletes everything (LangChain's contract)
    assert store.delete() is True
    assert store.similarity_search("energy", k=5, mode="bm25") == []
    assert store.get_by_ids(["wind", new_ids[0]]) == []
    with pytest.raises(LsrApiError, match="404"):
        LsrVectorStore("missing", url, KEY).similarity_search("x")


def test_llamaindex_vector_store(url):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import (FilterCondition, FilterOperator, MetadataFilter,
                                                      MetadataFilters, VectorStoreQuery,
                                                      VectorStoreQueryMode)

    from service.retrievers.llamaindex import LsrLlamaVectorStore
    store = LsrLlamaVectorStore(collection="li", base_url=url, api_key=KEY,
                                collection_options={"dense_encoder": None, "multivector_encoder": None})
    nodes = [TextNode(id_=i, text=t, metadata=m,
                      relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{m['topic']}")})
             for i, t, m in TEXTS]
    assert store.add(nodes) == [i for i, _, _ in TEXTS]
    res = store.query(VectorStoreQuery(query_str="wind electricity", similarity_top_k=2))
    assert res.ids[0] == "wind" and res.similarities[0] >= res.similarities[1]
    top = res.nodes[0]
    assert top.metadata == {"topic": "energy", "year": 2019} and top.ref_doc_id == "doc-energy"
    flt = MetadataFilters(filters=[MetadataFilter(key="topic", value="energy"),
                                   MetadataFilter(key="year", value=2020, operator=FilterOperator.GT)])
    res = store.query(VectorStoreQuery(query_str="power", similarity_top_k=5, filters=flt))
    assert res.ids == ["solar"]
    res = store.query(VectorStoreQuery(query_str="bread", similarity_top_k=5,
                                       mode=VectorStoreQueryMode.TEXT_SEARCH, doc_ids=["doc-cooking"]))
    assert res.ids[0] == "bread" and set(res.ids) <= {"bread", "pasta"}
    inn = MetadataFilters(filters=[MetadataFilter(key="year", value=[2015, 2022], operator=FilterOperator.IN)])
    assert {n.node_id for n in store.get_nodes(filters=inn)} == {"pasta", "goal"}
    assert [n.node_id for n in store.get_nodes(["goal", "wind", "nope"], inn)] == ["goal"]
    # unsupported filters are refused before any request, naming what is wrong
    with pytest.raises(ValueError, match="'or'"):
        store.query(VectorStoreQuery(query_str="x", filters=MetadataFilters(
            filters=[MetadataFilter(key="a", value=1)], condition=FilterCondition.OR)))
    with pytest.raises(ValueError, match="'!='"):
        store.get_nodes(filters=MetadataFilters(
            filters=[MetadataFilter(key="a", value=1, operator=FilterOperator.NE)]))
    with pytest.raises(ValueError, match="query_str"):
        store.query(VectorStoreQuery(query_embedding=[0.1, 0.2], similarity_top_k=2))
    # as an index's retriever: queries go as text, no embedding model is asked for
    from llama_index.core import MockEmbedding, VectorStoreIndex
    index = VectorStoreIndex.from_vector_store(store, embed_model=MockEmbedding(embed_dim=8))
    got = index.as_retriever(similarity_top_k=1).retrieve("striker goal")
    assert got[0].node.node_id == "goal" and got[0].node.get_content() == TEXTS[4][1]
    # deletes: a source document's nodes, nodes by id, by filter, everything
    store.delete("doc-cooking")
    assert {n.node_id for n in store.get_nodes()} == {"wind", "solar", "goal"}
    store.delete_nodes(["goal"])
    store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="year", value=2019)]))
    assert [n.node_id for n in store.get_nodes()] == ["solar"]
    store.clear()
    assert store.get_nodes() == []


def test_readme_vector_store_example_runs_as_printed(url):
    import re
    from pathlib import Path
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    readme = (Path(__file__).resolve().parents[2] / "service" / "README.md").read_text()
    block = re.search(r"```python\n(from service.retrievers.langchain import LsrVectorStore\n.*?)```",
                      readme, re.S).group(1)
    scope = {"KEY": KEY}
    exec(compile(block.replace("http://localhost:8000", url), "README.md", "exec"), scope)
    assert [d.page_content for d in scope["docs"]] == ["Wind turbines make electricity."]
    assert scope["res"].ids == []  # deleted again before the LlamaIndex query
