"""Make the packages of this checkout win over an editable install of another checkout.

scikit-build-core's editable install adds an import finder ahead of sys.path, so a venv built
from one worktree would otherwise import that worktree's packages here.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _foreign(finder) -> bool:
    known = getattr(finder, "known_source_files", None)
    if not isinstance(known, dict) or "encoders" not in known:
        return False
    return not Path(known["encoders"]).resolve().is_relative_to(ROOT)


sys.meta_path[:] = [f for f in sys.meta_path if not _foreign(f)]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
