"""sumnet-bench: how fast does the article's Net train and infer here, and does it still learn?

python -m bench run --preset quick
"""

HARNESS_VERSION = "0.1.0"
