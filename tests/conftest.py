"""Test configuration: the Triton interpreter on CPU, real kernels with --gpu.

TRITON_INTERPRET must be set before any @triton.jit function is created
(docs/design.md trap 2), so it is decided here, at import time, from sys.argv.

- ``pytest``        : CPU; Triton kernels run in the interpreter; tests marked
                      ``gpu`` are skipped.
- ``pytest --gpu``  : CUDA; no interpreter; every device-parameterised test runs
                      on the GPU, and the ``gpu``-marked (larger) cases run too;
                      ``-m gpu`` (``make test-gpu``) selects both.
"""

import atexit
import os
import shutil
import signal
import sys
import tempfile

# A run started in the background of a non-interactive shell (`make test &`, nohup)
# inherits SIGINT ignored (POSIX), and so would every runner the tests start: the Ctrl-C
# tests would then see runs that cannot be interrupted and fail. Python's own handler
# again; the children get the default back at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

GPU_RUN = "--gpu" in sys.argv
if GPU_RUN:
    os.environ.pop("TRITON_INTERPRET", None)
    # One config per kernel: correctness does not need the tuning sweep, which would
    # compile and time every candidate for every new shape key (minutes on the H100).
    os.environ.setdefault("KERNELS_AUTOTUNE", "0")
else:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--gpu",
        action="store_true",
        default=False,
        help="run the kernel tests on CUDA without the Triton interpreter",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--gpu"):
        if not torch.cuda.is_available():
            raise pytest.UsageError("--gpu given but torch sees no CUDA device")
        # Every test that takes the `device` fixture runs on CUDA now: mark it gpu too, so
        # `make test-gpu` (-m gpu) runs it. The interpreter passed a forward whose masked
        # head-dim tail read out of bounds on the H200; only the GPU run showed it.
        for item in items:
            if "device" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.gpu)
        return
    skip_gpu = pytest.mark.skip(reason="GPU-only case: run `pytest --gpu` on a CUDA machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def device():
    """Where kernel tests run: 'cuda' with --gpu, else 'cpu' (Triton interpreter)."""
    return "cuda" if GPU_RUN else "cpu"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The reference cache (harness/refcache.py) of every test, the asv runs they start included:
# a temporary folder, never ~/.cache (tests of the cache point it at their own tmp_path).
_REF_CACHE = tempfile.mkdtemp(prefix="gradgrad-ref-cache-")
os.environ["GRADGRAD_REF_CACHE"] = _REF_CACHE
atexit.register(shutil.rmtree, _REF_CACHE, True)
