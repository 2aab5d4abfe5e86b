import pytest
import torch

from bench.errors import UsageError
from bench.modes import MODES
from bench.modes.selection import parse_devices, parse_modes, skip_reason
from sumnet.device import resolve_device, unavailable_reason


def test_cpu_only_modes_and_cuda_only_modes_are_skipped_with_reasons():
    assert skip_reason("cpu", "eager") is None
    assert skip_reason("cpu", "numpy-reference") is None
    assert skip_reason("cpu", "cudagraph") == "cudagraph runs on cuda only"
    assert skip_reason("cpu", "compile-cudagraphs") == "compile-cudagraphs runs on cuda only"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the reasons given without a GPU")
def test_cuda_rows_are_skipped_with_the_reason_when_there_is_no_gpu():
    reason = skip_reason("cuda", "eager")
    assert reason and ("CPU-only build" in reason or "is_available" in reason)
    assert parse_devices("auto") == ["cpu", "cuda"]  # absent cuda stays, to be reported skipped
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_modes_run_on_cuda():
    assert skip_reason("cuda", "cudagraph") is None
    assert skip_reason("cuda", "numpy-reference") == "numpy-reference runs on cpu only"


def test_parsing_and_bad_names():
    assert parse_modes("eager, compile,eager") == ["eager", "compile"]
    assert parse_modes("all") == list(MODES)
    with pytest.raises(UsageError, match="unknown mode"):
        parse_modes("eager,warp")
    with pytest.raises(UsageError, match="unknown device"):
        parse_devices("cpu,tpu")
    with pytest.raises(UsageError, match="empty"):
        parse_devices(" , ")
    with pytest.raises(ValueError, match="unknown device"):
        unavailable_reason("gpu")
    assert resolve_device("auto")[0].type in ("cpu", "cuda", "mps")
