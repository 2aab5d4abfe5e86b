"""Rendering: markdown tables and reports, PNG figures (one matplotlib policy: the Agg canvas,
never pyplot's global state)."""
