"""One model resolver for every encoder.

A name resolves, in order, to: an existing local path; a folder in the models cache
(``LSR_MODELS_DIR``, default ``<repo>/models``); otherwise the name itself, handed to
``from_pretrained`` (which only works where a model hub is reachable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SPLADE = "splade-tiny"
DEFAULT_DENSE = "all-MiniLM-L6-v2"


def models_dir() -> Path:
    """The local models cache: ``$LSR_MODELS_DIR`` or ``<repo>/models``."""
    env = os.environ.get("LSR_MODELS_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "models"


def _cache_candidates(name: str) -> list[Path]:
    # Hub names contain "/"; the cache may hold them flattened or by their last part.
    root = models_dir()
    names = [name, name.replace("/", "__"), name.rstrip("/").split("/")[-1]]
    return [root / n for n in dict.fromkeys(names) if n]


def resolve(name_or_path: str | os.PathLike[str]) -> str:
    """Local directory for ``name_or_path`` if there is one, else the name unchanged."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p)
    for cand in _cache_candidates(str(name_or_path)):
        if (cand / "config.json").is_file():
            return str(cand)
    return str(name_or_path)


def _load(loader: Any, name_or_path: str | os.PathLike[str], **kwargs: Any) -> Any:
    where = resolve(name_or_path)
    try:
        return loader.from_pretrained(where, **kwargs)
    except OSError as e:
        raise OSError(
            f"cannot load model {str(name_or_path)!r}: not a local path, not in the models "
            f"cache {models_dir()} and not loadable from a hub ({e}). "
            "Run `python -m encoders.fetch_models` to install the default models."
        ) from e


def load_tokenizer(name_or_path: str | os.PathLike[str], **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, name_or_path, **kwargs)


def load_model(name_or_path: str | os.PathLike[str], auto_class: Any, **kwargs: Any) -> Any:
    """Load with ``auto_class`` (e.g. ``AutoModelForMaskedLM``) in eval mode."""
    model = _load(auto_class, name_or_path, **kwargs)
    model.eval()
    return model
