"""Command-line tools around fairseq runs (evaluation, reports); run with ``python -m``."""
