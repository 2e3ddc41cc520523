"""Offline corpus builders and subword tools (framework-free, no fairseq import)."""
