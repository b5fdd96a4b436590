"""ONNX Runtime graphs of a transformer encoder: the fast paths of ``DenseEncoder(int8=True)``.

One conversion per model: the model is exported to ONNX (eager attention, so the optimizer can
see it) and fused by ONNX Runtime's transformer optimizer (one Attention op per layer, bias +
GELU, skip + LayerNorm). Two graphs are kept:

- ``fp32``: the fused graph as is. Same vectors as PyTorch to ~1e-7, with much less per-call
  overhead: a lone MiniLM query encodes ~2x faster (queries use it).
- ``int8``: every matmul of the fused graph dynamically quantised, int8 weights with one scale per
  output channel, activations with one scale per batch; the embedding tables stay float32.
  Approximate, ~1.6x the throughput of PyTorch on long documents (documents use it).
  ``torch.ao`` int8 linear layers gave ~1.3x at a worse fidelity (worst cosine 0.97 vs 0.99):
  attention, GELU and LayerNorm stay unfused float32 between its int8 GEMMs.

Measurements: BENCHMARKS.md, "Encoding speed". The graphs are cached as files
(``graph_paths``): ``$LSR_ONNX_CACHE``, else ``<models dir>/onnx``, else the temp directory when
that is read-only. Because int8 activations are quantised per batch, a text's int8 vector depends
slightly on the other texts in its batch; the same batch always gives the same output.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from encoders.models import models_dir

log = logging.getLogger(__name__)

# Bump when the conversion recipe changes, so cached files from an older recipe are not reused.
RECIPE = "3"


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
    return [models_dir() / "onnx", Path(tempfile.gettempdir()) / "lsr-onnx"]


PRECISIONS = ("fp32", "int8")


def graph_paths(model_path: str | os.PathLike[str], cache_dir: Path | None = None) -> dict[str, Path]:
    """The cached ``{"fp32": file, "int8": file}`` graphs of the local model folder ``model_path``,
    converted on first use (into ``cache_dir`` if given, else the first writable of ``cache_dirs()``)."""
    src = Path(model_path)
    if not (src / "config.json").is_file():
        raise ValueError(f"the ONNX graphs need a local model folder with config.json, got {str(model_path)!r}")
    stem = f"{src.name}-{_model_key(src)}"
    roots = [cache_dir] if cache_dir is not None else cache_dirs()
    candidates = [(root, {p: root / f"{stem}.{p}.onnx" for p in PRECISIONS}) for root in roots]
    for _, paths in candidates:
        if all(f.is_file() for f in paths.values()):
            return paths
    errors = []
    for root, paths in candidates:
        try:
            root.mkdir(parents=True, exist_ok=True)
            _convert(src, paths)
            return paths
        except OSError as e:  # read-only cache: try the next one
            errors.append(f"{root}: {e}")
    raise OSError("cannot write the ONNX graphs to any cache directory: " + "; ".join(errors))


def _convert(src: Path, out: dict[str, Path]) -> None:
    """Export -> fuse (-> fp32 file) -> quantise (-> int8 file), in a child process.

    A conversion can start from a first query inside a serving process, and there it is not
    safe: ``torch.onnx.export`` traces through process-wide state while other threads run
    forward passes (a hybrid search encodes its lists in parallel), and the caller may be
    inside ``torch.inference_mode()``, where the loaded weights cannot be traced. The child has
    neither problem. It writes in a temporary directory, then renames (two processes converting
    at once each write their own temporaries; the last rename wins, both valid). Any failure is
    an OSError carrying the child's last output lines, so graph_paths tries the next cache."""
    import json
    import subprocess
    import sys
    job = json.dumps({"src": str(src), "out": {k: str(v) for k, v in out.items()}})
    res = subprocess.run([sys.executable, "-m", "encoders.onnx_graphs", job], capture_output=True, text=True)
    if res.returncode != 0 or not all(Path(f).is_file() for f in out.values()):
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-5:])
        raise OSError(f"converting {src} to ONNX failed (exit {res.returncode}): {tail}")


def _convert_model(src: Path, out: dict[str, Path]) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    log.info("converting %s to ONNX Runtime graphs (once; cached as %s)", src, out["fp32"].parent)
    # eager attention exports as plain matmul/softmax, which the optimizer fuses into Attention
    model = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    cfg = model.config
    with tempfile.TemporaryDirectory(dir=out["fp32"].parent) as tmp:
        fp32, fused = Path(tmp) / "fp32.onnx", Path(tmp) / "fused.onnx"
        ids = torch.ones((2, 8), dtype=torch.long)
        with warnings.catch_warnings():
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
        int8 = Path(tmp) / "int8.onnx"
        # the fused ops are outside ONNX's shape inference; their outputs are float32
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # the quantizer's advice goes to the root logger
        try:
            quantize_dynamic(str(fused), str(int8), per_channel=True, weight_type=QuantType.QInt8,
                             nodes_to_exclude=keep_fp32, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.level = level
        # atomic: the temporary dir is inside the cache directory, on the same filesystem
        os.replace(int8, out["int8"])
        os.replace(fused, out["fp32"])


class _LastHiddenState(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class OnnxTransformer:
    """Callable like a Hugging Face ``AutoModel`` for ``last_hidden_state`` (float32 torch tensor),
    backed by an ONNX Runtime session over the model's ``precision`` graph (``graph_paths``)."""

    def __init__(self, model_path: str | os.PathLike[str], precision: str, threads: int | None = None):
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.path = graph_paths(model_path)[precision]
        self.key = self.path.name.rsplit(".", 2)[0].rsplit("-", 1)[-1]  # model + conversion recipe
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        # no busy-waiting between ops: the process also runs PyTorch and the index's threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
        feeds = {"input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
                 "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64)}
        (states,) = self.session.run(None, feeds)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(states))


if __name__ == "__main__":  # the child of _convert: python -m encoders.onnx_graphs '{"src", "out"}'
    import json
    import sys
    _job = json.loads(sys.argv[1])
    _convert_model(Path(_job["src"]), {k: Path(v) for k, v in _job["out"].items()})
