"""Retrievers for RAG frameworks over the REST API (optional extras `langchain`, `llamaindex`).

    from service.retrievers.langchain import LsrRetriever          # pip install lsr-search[langchain]
    from service.retrievers.llamaindex import LsrLlamaRetriever    # pip install lsr-search[llamaindex]
"""
