"""A/B of the blocking's Lloyd steps (SeismicParams.cluster_rounds): benchmarks.param_ab with
--param cluster_rounds.

    python -m benchmarks.cluster_rounds --dataset synthetic-100k --rounds 0,1
    python -m benchmarks.cluster_rounds --dataset synthetic-100k-flat --rounds 0,1,2 --seed 7
"""
from __future__ import annotations

import sys

from .param_ab import main as param_ab


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    param_ab(["--values" if a == "--rounds" else a for a in argv], param="cluster_rounds", values="0,1")


if __name__ == "__main__":
    main()
