"""Measurement: the one clock (timing), the workloads that return raw samples, the environment,
and the batched ensemble the convergence study trains. Nothing here renders or parses a command line."""
