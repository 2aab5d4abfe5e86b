"""Analysis: statistics on raw samples, significance tests, and the one derive step that turns
measured records into derived values (throughput, flags, ratios, break-even). Pure functions."""
