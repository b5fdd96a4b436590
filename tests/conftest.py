import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Keep third-party caches out of the home directory and never reach for a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "MPLCONFIGDIR" not in os.environ:
    os.environ["MPLCONFIGDIR"] = _mpl_dir = tempfile.mkdtemp(prefix="mpl-")
    atexit.register(shutil.rmtree, _mpl_dir, ignore_errors=True)  # no leftovers between runs


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """torch.set_num_threads is process-wide (a CLI's --threads, an app's torch_threads): a test
    that changes it must not change the thread count, hence the float rounding and the speed,
    of the tests that run after it."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)
