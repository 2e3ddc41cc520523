"""Command-line tools that need no fairseq: checkpoint reports, plots, tables, significance; run with ``python -m``."""
