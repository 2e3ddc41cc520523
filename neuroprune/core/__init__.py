"""Framework-free NeuroPrune algorithms: tensors in, tensors out (no fairseq import)."""
