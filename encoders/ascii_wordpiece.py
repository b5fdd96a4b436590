"""BERT's uncased WordPiece tokenization of ASCII text, in plain Python.

An inference-free query runs no model: its cost is the tokenizer (encoders/inference_free.py).
The Rust tokenizer spends ~40 µs on a SciFact query, most of it building the Encoding object's
offsets and strings that a query never reads; this path gives the same ids for ASCII text in
~10 µs, and anything else goes to the Rust tokenizer. It exists only for a tokenizer whose
pipeline it reproduces exactly (``AsciiWordPiece.of`` checks the tokenizer.json): BertNormalizer
(clean_text, lowercase), BertPreTokenizer, WordPiece with "##" continuations — the uncased BERT
vocabularies that SPLADE and the inference-free models use. tests/encoders check equality on
random ASCII strings and on real queries.
"""
from __future__ import annotations

import json
import re

# clean_text drops control characters: ASCII 0-31 but tab, newline and carriage return, and DEL
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# BertPreTokenizer splits on whitespace and makes every punctuation character a token of its
# own; in ASCII every printable character that is not a letter or digit is punctuation to BERT
_PIECES = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")


class AsciiWordPiece:
    def __init__(self, vocab: dict[str, int], unk_id: int, prefix: str = "##", max_chars: int = 100,
                 added: tuple[str, ...] = ()):
        self.vocab = vocab
        self.unk_id = unk_id
        self.prefix = prefix
        self.max_chars = max_chars
        self.added = added  # special tokens' texts ([CLS], [MASK], ...)

    @classmethod
    def of(cls, tokenizer) -> AsciiWordPiece | None:
        """The fast path for a transformers tokenizer, or None where its pipeline differs."""
        fast = getattr(tokenizer, "_tokenizer", None)
        if fast is None:
            return None
        try:
            spec = json.loads(fast.to_str())
        except (AttributeError, ValueError):
            return None
        norm, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        if not (norm.get("type") == "BertNormalizer" and norm.get("clean_text") and norm.get("lowercase")
                and pre.get("type") == "BertPreTokenizer" and model.get("type") == "WordPiece"
                and spec.get("added_tokens") is not None):
            return None
        vocab = model.get("vocab") or {}
        unk = model.get("unk_token")
        if unk not in vocab:
            return None
        added = tuple(t["content"] for t in spec["added_tokens"])
        return cls(vocab, vocab[unk], model.get("continuing_subword_prefix", "##"),
                   int(model.get("max_input_chars_per_word", 100)), added)

    def ids(self, text: str) -> list[int] | None:
        """Token ids of a text, no special tokens; None for text this path does not take:
        non-ASCII, or holding an added token's text ("[MASK]"), which the Rust tokenizer
        matches before normalising."""
        if not text.isascii() or any(a in text for a in self.added):
            return None
        out: list[int] = []
        vocab, prefix = self.vocab, self.prefix
        for word in _PIECES.findall(_CONTROL.sub("", text).lower()):
            i = vocab.get(word)
            if i is not None:  # most query words are whole vocabulary entries
                out.append(i)
                continue
            n = len(word)
            if n > self.max_chars:
                out.append(self.unk_id)
                continue
            pieces, start = [], 0
            while start < n:  # greedy longest match first, as WordPiece
                end = n
                while end > start:
                    piece = word[start:end] if start == 0 else prefix + word[start:end]
                    i = vocab.get(piece)
                    if i is not None:
                        break
                    end -= 1
                if end == start:  # no piece matches: the whole word is unknown
                    pieces = [self.unk_id]
                    break
                pieces.append(i)
                start = end
            out.extend(pieces)
        return out
