"""Storage: a run folder (results.csv, run.json) written from records and read back, and the
pytest-benchmark JSON loader."""
