"""Command-line tools that load fairseq models or run fairseq (evaluation, pruning, export, benchmarks); run with ``python -m``."""
