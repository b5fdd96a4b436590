"""The approximate int8 path for transformer encoders: the model exported to ONNX, its layers
fused by ONNX Runtime's transformer optimizer (one Attention op per layer, bias + GELU,
skip + LayerNorm), every matmul dynamically quantised to int8 with one weight scale per output
channel (the embedding tables stay float32), run by ONNX Runtime. ``DenseEncoder(int8=True)``
encodes documents with it; queries stay float32.

Why ONNX Runtime and not ``torch.ao`` dynamic quantisation: on the 2-core AVX2 machine the fused
int8 graph encodes MiniLM ~1.6x faster than eager float32 PyTorch, ``torch.ao`` int8 linear layers
~1.3x (the attention, GELU and LayerNorm between them stay unfused float32); and its worst
document cosine to float32 is 0.99 vs 0.97 (BENCHMARKS.md, "Encoding speed").

The converted model is built once per model and cached as a file (``int8_model_path``):
``$LSR_ONNX_CACHE``, else ``<models dir>/onnx-int8``, else the temp directory when that is
read-only. Activations are quantised per batch, so a text's vector depends slightly on the
other texts in its batch (within the accuracy above); the same batch always gives the same output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.models import models_dir

log = logging.getLogger(__name__)

# Bump when the conversion recipe changes, so cached files from an older recipe are not reused.
RECIPE = "2"


def _model_key(model_path: Path) -> str:
    """Identity of a local model folder: its config and weight files' names, sizes and mtimes."""
    h = hashlib.sha256(RECIPE.encode())
    import onnxruntime
    h.update(onnxruntime.__version__.encode())
    for f in sorted(model_path.iterdir()):
        if f.is_file() and (f.suffix in {".json", ".safetensors", ".bin"}):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cache_dirs() -> list[Path]:
    env = os.environ.get("LSR_ONNX_CACHE")
    if env:
        return [Path(env).expanduser()]
    return [models_dir() / "onnx-int8", Path(tempfile.gettempdir()) / "lsr-onnx-int8"]


def int8_model_path(model_path: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """The cached int8 ONNX file for the local model folder ``model_path``, converted on first use
    (into ``cache_dir`` if given, else the first writable of ``cache_dirs()``)."""
    src = Path(model_path)
    if not (src / "config.json").is_file():
        raise ValueError(f"the int8 path needs a local model folder with config.json, got {str(model_path)!r}")
    name = f"{src.name}-{_model_key(src)}.onnx"
    roots = [cache_dir] if cache_dir is not None else cache_dirs()
    for root in roots:
        if (root / name).is_file():
            return root / name
    errors = []
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
            out = root / name
            _convert(src, out)
            return out
        except OSError as e:  # read-only cache: try the next one
            errors.append(f"{root}: {e}")
    raise OSError("cannot write the int8 ONNX model to any cache directory: " + "; ".join(errors))


def _convert(src: Path, out: Path) -> None:
    """Export -> fuse -> quantise, through temporary files, then one atomic rename (two processes
    converting at once each write their own temporaries; the last rename wins, both valid)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    log.info("converting %s to int8 ONNX (once; cached as %s)", src, out)
    # eager attention exports as plain matmul/softmax, which the optimizer fuses into Attention
    model = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    cfg = model.config
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32, fused = Path(tmp) / "fp32.onnx", Path(tmp) / "fused.onnx"
        ids = torch.ones((2, 8), dtype=torch.long)
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LastHiddenState(model), (ids, torch.ones_like(ids)), str(fp32),
                input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in
                              ("input_ids", "attention_mask", "last_hidden_state")},
                opset_version=17, dynamo=False)
        opt = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=cfg.num_attention_heads,
                                       hidden_size=cfg.hidden_size, opt_level=1)
        opt.save_model_to_file(str(fused))
        # The embedding tables stay float32: quantising them costs accuracy and saves no time
        # (a lookup, not a matmul). Chosen on SciFact's train queries, BENCHMARKS.md.
        keep_fp32 = [n.name for n in opt.model.graph.node if n.op_type == "EmbedLayerNormalization"]
        partial = out.with_name(out.name + f".{os.getpid()}.tmp")
        # the fused ops are outside ONNX's shape inference; their outputs are float32
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # the quantizer's advice goes to the root logger
        try:
            quantize_dynamic(str(fused), str(partial), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=keep_fp32, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.level = level
        os.replace(partial, out)


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class Int8Transformer:
    """Callable like a Hugging Face ``AutoModel`` for ``last_hidden_state`` (float32 torch tensor),
    backed by an ONNX Runtime session over ``int8_model_path(model_path)``."""

    def __init__(self, model_path: str | os.PathLike[str], threads: int | None = None):
        import onnxruntime as ort

        self.path = int8_model_path(model_path)
        self.key = self.path.stem.rsplit("-", 1)[-1]  # identifies model + conversion recipe
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        # no busy-waiting between ops: the process also runs PyTorch and the index's threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        feeds = {"input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64)}
        (states,) = self.session.run(None, feeds)
        return _Output(torch.from_numpy(states))


class _Output:
    __slots__ = ("last_hidden_state",)

    def __init__(self, last_hidden_state: torch.Tensor):
        self.last_hidden_state = last_hidden_state
