"""NeuroPrune without fairseq: the tensor algorithms (``core``), corpus preparation (``corpus``), figures
read from checkpoint files (``checkpoint_stats``) and the command-line tools that need no model
(``tools``). Nothing here imports fairseq; the fairseq plugin is the sibling package ``neuroprune_fairseq``.
"""
