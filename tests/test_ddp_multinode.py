"""Two torchrun launches acting as two nodes on this machine: c10d rendezvous on 127.0.0.1, gloo,
2 ranks each (world size 4), 1 thread per rank. The run completes and global rank 0 alone writes
the result; a second node that never starts fails the first within the rendezvous join timeout.

    pytest tests/test_ddp_multinode.py
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.ddp.launch import run_ddp, torchrun_command
from bench.ddp.plan import DDPPlan

STEPS = 200
TIMEOUT_S = 180.0  # the launcher's last line, per node
JOIN_TIMEOUT_S = 2.0  # how long node 0 waits for a node that never starts


def free_port() -> int:
    """A TCP port that was free a moment ago, for the rendezvous endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_command_for_several_nodes_uses_c10d_rendezvous(tmp_path: Path) -> None:
    cmd = torchrun_command(
        DDPPlan(), 2, tmp_path / "r.json", nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400"
    )
    text = " ".join(cmd)
    assert "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint 10.0.0.1:29400" in text
    assert "--rdzv-id sumnet-ddp-10-0-0-1-29400" in text and "is_host=false" in text
    assert "--max-restarts 0" in text and "--standalone" not in text
    assert cmd[-2:] == ["--out", str(tmp_path / "r.json")]
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command(DDPPlan(), 2, tmp_path / "r.json", nnodes=2)


@pytest.mark.slow
def test_two_nodes_of_two_ranks_complete_and_write_one_result(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    outs = [tmp_path / f"node{n}.json" for n in range(2)]
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                run_ddp,
                4,
                steps=STEPS,
                threads_per_rank=1,
                timeout_s=TIMEOUT_S,
                nnodes=2,
                node_rank=node,
                rdzv_endpoint=endpoint,
                out=outs[node],
            )
            for node in range(2)
        ]
        results = [f.result() for f in futures]
    failed = [r.reason for r in results if r is not None and not r.ok]
    assert not failed, failed
    written = [path for path in outs if path.exists()]
    assert len(written) == 1, f"expected one result file, found {written}"
    (result,) = [r for r in results if r is not None]  # the other node returns None: no result there
    assert (result.world_size, result.nnodes, result.backend) == (4, 2, "gloo")
    assert sorted(result.nodes) == [0, 0, 1, 1]
    assert [len(s) for s in result.step_ms] == [1, 1, 1, 1]  # 200 steps: one warm-up block, one sample
    assert list(result.loss_curve) == [100, 200] and result.global_batch == 128


@pytest.mark.slow
def test_a_node_that_never_starts_fails_the_run_within_the_join_timeout() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    result = run_ddp(
        4, steps=STEPS, timeout_s=TIMEOUT_S, nnodes=2, rdzv_endpoint=endpoint, join_timeout_s=JOIN_TIMEOUT_S
    )
    assert result is not None and result.status == "failed"
    assert result.reason.startswith("rendezvous timed out: not all 2 nodes joined"), result.reason
    assert f"join_timeout_s={JOIN_TIMEOUT_S:g}" in result.reason
    assert result.wall_s < TIMEOUT_S / 2  # the join timeout ended it, not the launcher's last line
