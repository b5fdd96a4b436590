"""``lsr train inference-free|csr|multivector <beir-folder> --out DIR``: train, then register.

The model is written to ``--out`` with its ``lsr-model.json``; a directory inside the models
cache (``LSR_MODELS_DIR``) is a registered model at once, named by the directory — a server
lists it in GET /models (after a restart for a running one's loaded encoders) and a collection
names it in ``sparse_encoder`` (inference-free, csr) or ``multivector_encoder``.
"""
from __future__ import annotations

import sys
from pathlib import Path

KINDS = ("inference-free", "csr", "multivector")


def add_arguments(p) -> None:
    p.add_argument("kind", choices=KINDS)
    p.add_argument("folder", type=Path, help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--out", type=Path, required=True,
                   help="model directory to write (inside LSR_MODELS_DIR: registered under its name)")
    p.add_argument("--base", help="starting model: the SPLADE document model (inference-free), the dense "
                   "model (csr), the token backbone (multivector); default: the server defaults")
    p.add_argument("--steps", type=int, help="training steps (inference-free, csr); default: the trainer's")
    p.add_argument("--k", dest="csr_k", type=int, default=8, help="csr: latents per vector after annealing")
    p.add_argument("--epochs", type=int, help="multivector: epochs over the train split's pairs")
    p.add_argument("--flops-weight", type=float,
                   help="inference-free: weight of the IDF-aware FLOPS regulariser (sparser documents as it grows)")
    p.add_argument("--dev", action="store_true", help="inference-free: report the before/after evaluation on "
                   "qrels/train.tsv instead of test (choose settings on it, never on test)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: LSR_DEVICE, else auto)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from encoders import device as devices
    from encoders import registry
    from encoders.models import models_dir
    if args.device:
        devices.set_default(args.device)  # a device the machine lacks fails here, before any work
    out: Path = args.out
    quiet = ["--no-progress"] if args.no_progress else []
    if args.kind == "inference-free":
        from training.inference_free import main
        argv = [str(args.folder), "--out", str(out), "--threads", "0", *quiet]
        argv += ["--steps", str(args.steps)] if args.steps else []
        argv += ["--model", args.base] if args.base else []
        argv += ["--flops-weight", repr(args.flops_weight)] if args.flops_weight is not None else []
        argv += ["--dev"] if args.dev else []
        rc = main(argv)
    elif args.kind == "csr":
        from training.csr import CSRTrainConfig, train_model
        train_model(args.folder, out, k=args.csr_k, steps=args.steps or CSRTrainConfig.steps,
                    dense_model=args.base, progress=not args.no_progress,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
        rc = 0
    else:
        from training.multivector import main
        argv = [str(args.folder), "--out", str(out)]
        argv += ["--model", args.base] if args.base else []
        argv += ["--epochs", str(args.epochs)] if args.epochs else []
        rc = main(argv)
    if rc:
        return rc
    spec_dir = out.resolve()
    if spec_dir.parent == models_dir().resolve():
        spec = registry.get(spec_dir.name)
        problem = registry.problems().get(spec_dir.name)
        if spec is None:
            print(f"lsr: {out} was written but does not register: {problem}", file=sys.stderr)
            return 1
        print(f"registered model {spec.name!r} (kind {spec.kind}) in the models cache: collections can name it")
    else:
        print(f"wrote {out} with its {registry.MANIFEST}; move or link it into the models cache "
              f"({models_dir()}, LSR_MODELS_DIR) to serve it under the directory's name")
    return 0
