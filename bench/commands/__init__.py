"""The commands of `python -m bench`, one module each: `add_arguments(parser)` and `main(args)`
(`history` and `dashboard` live in bench/history; `crosscheck` is `python -m bench.crosscheck`).
They parse flags and call measure, store, analysis and render; nothing below imports them."""
