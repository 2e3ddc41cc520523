"""FFN connectivity on plain tensors: neuron degrees, their histogram and summary statistics.

A hidden unit ``i`` of an FFN block is connected to the embedding through row ``i`` of ``fc1``
(its inputs) and column ``i`` of ``fc2`` (its outputs). Its degree counts the connections that are
not near zero; the paper's preferential attachment shows up as a widening spread of degrees
(a few hubs, many weakly connected units), and a unit of degree 0 is dead.
"""
from typing import Dict, List, Tuple

import torch


def neuron_degrees(fc1_weight: torch.Tensor, fc2_weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Degree of every hidden unit: ``#(|fc1[i, :]| >= eps) + #(|fc2[:, i]| >= eps)``.

    Args:
        fc1_weight: (ffn, embed).
        fc2_weight: (embed, ffn).
        eps: near-zero threshold.
    Returns:
        (ffn,) int64 tensor in ``[0, embed_in + embed_out]``.
    """
    if fc1_weight.shape[0] != fc2_weight.shape[1]:
        raise ValueError(f"fc1 has {fc1_weight.shape[0]} hidden units but fc2 has {fc2_weight.shape[1]}")
    inputs = (fc1_weight.detach().abs() >= eps).sum(dim=1)  # (ffn,)
    outputs = (fc2_weight.detach().abs() >= eps).sum(dim=0)  # (ffn,)
    return inputs + outputs


def degree_summary(degrees: torch.Tensor) -> Dict[str, float]:
    """Width, dead units (degree 0), mean and population standard deviation of a set of degrees.

    Args:
        degrees: (units,) integer tensor.
    Returns:
        ``{"width", "dead", "degree_mean", "degree_std"}``; mean and std are 0 for no units.
    """
    values = degrees.double()  # (units,)
    empty = values.numel() == 0
    return {
        "width": int(values.numel()),
        "dead": int((degrees == 0).sum()),
        "degree_mean": 0.0 if empty else float(values.mean()),
        "degree_std": 0.0 if empty else float(values.std(correction=0)),
    }


def degree_histogram(degrees: torch.Tensor, max_degree: int, bins: int) -> Tuple[List[float], List[int]]:
    """Counts of degrees in ``bins`` equal bins over ``[0, max_degree]`` (the last bin includes ``max_degree``).

    Fixed edges make histograms of checkpoints of one architecture directly comparable.

    Args:
        degrees: (units,) integer tensor with values in ``[0, max_degree]``.
        max_degree: largest possible degree (``embed_in + embed_out``), > 0.
        bins: number of bins, > 0.
    Returns:
        ``(edges, counts)``: ``bins + 1`` edges and ``bins`` counts.
    """
    edges = torch.linspace(0, max_degree, bins + 1, dtype=torch.float64)  # (bins+1,)
    counts = torch.histc(degrees.double(), bins=bins, min=0, max=max_degree)  # (bins,)
    return edges.tolist(), [int(c) for c in counts.tolist()]
