import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM

from encoders.base import validate_csr
from encoders.echo_splade import EchoSpladeEncoder
from encoders.models import load_tokenizer


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory, splade_tiny_path):
    """A randomly initialised 2-layer Mistral with a BERT wordpiece tokenizer, saved to disk."""
    tok = load_tokenizer("splade-tiny")
    tok.bos_token = "[CLS]"
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("tiny-mistral")
    MistralForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_pooled_positions_are_exactly_the_second_copy(tiny_mistral):
    enc = EchoSpladeEncoder(str(tiny_mistral), prefix="passage", echo_prefix="again", progress=False)
    text = enc.tokenizer("stem cells divide", add_special_tokens=False)["input_ids"]
    inputs, pooled = enc.echo_inputs(text)
    assert [inputs[p] for p in pooled] == text
    assert pooled[0] > len(text) and pooled[-1] == len(inputs) - 1
    assert inputs[:pooled[0]][-len(enc._echo) - len(text):-len(enc._echo)] == text  # first copy


def test_weights_equal_naive_pooling_over_second_copy(tiny_mistral):
    enc = EchoSpladeEncoder(str(tiny_mistral), progress=False)
    ref = AutoModelForCausalLM.from_pretrained(tiny_mistral).eval()
    texts = ["stem cells divide in bone marrow", "galaxy", "a much longer text about protein folding and cancer"]
    ids = [enc.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    got = enc.weights(ids)
    for i, t in enumerate(ids):
        inputs, pooled = enc.echo_inputs(t)
        with torch.inference_mode():
            logits = ref(input_ids=torch.tensor([inputs])).logits[0]
        expected = torch.log1p(torch.relu(logits[pooled])).amax(dim=0)
        assert torch.allclose(got[i], expected, atol=1e-5), i
        # Pooling the first copy instead would give different weights.
        first = torch.log1p(torch.relu(logits[len(enc._bos):len(enc._bos) + len(t)])).amax(dim=0)
        assert not torch.allclose(first, expected, atol=1e-3)


def test_encode_protocol_truncation_and_empty(tiny_mistral):
    enc = EchoSpladeEncoder(str(tiny_mistral), top_k=5, progress=False)
    assert enc.max_text_tokens == (128 - 1) // 2
    m = validate_csr(enc.encode_documents(["stem cells", "", "x " * 500 + "end", "x " * 500 + "other"]),
                     dim=enc.dim, n_rows=4)
    assert m.getnnz(axis=1).tolist() == [5, 0, 5, 5]
    # both truncated to the same 63 tokens (equal to float rounding: two rows of one batch)
    np.testing.assert_allclose(m[2].toarray(), m[3].toarray(), atol=1e-5)
    assert len(enc.decode(m[0])) == 5
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        enc.encode_queries([3])
