"""Data-parallel training of the article's Net through torchrun and DistributedDataParallel.

plan.py checks a configuration (world size, backend, scaling) before anything starts; worker.py is
the torchrun entry point that trains and times under DDP; launch.py starts torchrun, enforces the
timeouts and turns rank 0's JSON, or torchrun's error summary, into a `DDPResult`.

    python -c "from bench.ddp.launch import run_ddp; r = run_ddp(2, steps=300, timeout_s=120); print(r.status, r.slowest_step_ms)"
"""
