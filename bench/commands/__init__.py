"""The commands of `python -m bench`, one module each: `add_arguments(parser)` and `main(args)`.
They parse flags and call measure, store, analysis and render; nothing below imports them."""
