import os
import sys
from pathlib import Path

import numpy as np
import pytest

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
sys.path.insert(0, str(here.parent))  # the package from the source tree

import polyattn  # noqa: E402


def _opencl_devices():
    return [d for d in polyattn.devices() if d["backend"] == "opencl"]


BACKENDS = ["host", pytest.param("opencl", marks=pytest.mark.skipif(
    not _opencl_devices(), reason="no OpenCL device (PoCL not installed or OpenCL not built)"))]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(int(os.environ.get("POLYATTN_TEST_SEED", "1234")))


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def tol(dtype):
    return {np.dtype(np.float32): 2e-5, np.dtype(np.float16): 4e-3}[np.dtype(dtype)]
