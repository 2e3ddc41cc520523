"""What every command-line tool shares: parent parsers of the common flags, argparse types, one error convention.

Errors: library code raises ``ValueError`` with a message that names the flag or file; a tool's ``main``
turns it into that one line on stderr and exit status 1 (:func:`exit_on_value_error`, or ``SystemExit``
with the message for checks made in ``main`` itself).
"""
import argparse
from contextlib import contextmanager
from typing import Callable, Iterator

from .core.sparsity import NEAR_ZERO_EPS


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def cpu_flag(work: str) -> argparse.ArgumentParser:
    """``--cpu``: do ``work`` (e.g. ``generate``) on CPU even if CUDA is available."""
    parent = _parent()
    parent.add_argument("--cpu", action="store_true", help=f"{work} on CPU even if CUDA is available")
    return parent


def overwrite_flag(help: str) -> argparse.ArgumentParser:
    """``--overwrite``, with what it replaces in ``help``."""
    parent = _parent()
    parent.add_argument("--overwrite", action="store_true", help=help)
    return parent


def eps_flag(help: str) -> argparse.ArgumentParser:
    """``--eps``, the near-zero threshold, default :data:`NEAR_ZERO_EPS`; ``help`` says what it decides."""
    parent = _parent()
    parent.add_argument("--eps", type=float, default=NEAR_ZERO_EPS, help=help)
    return parent


def generation_flags() -> argparse.ArgumentParser:
    """The fairseq-generate settings of the tools that translate a split (``--subset --beam --batch-size
    --max-len-a --max-len-b --cpu``)."""
    parent = argparse.ArgumentParser(add_help=False, parents=[cpu_flag("generate")])
    parent.add_argument("--subset", default="test", help="fairseq split to translate")
    parent.add_argument("--beam", type=int, default=5, help="beam size")
    parent.add_argument("--batch-size", type=int, default=64, help="sentences per generation batch")
    parent.add_argument("--max-len-a", type=float, default=1.2, help="fairseq --max-len-a (stops runaway hypotheses)")
    parent.add_argument("--max-len-b", type=int, default=10, help="fairseq --max-len-b")
    return parent


def at_least(minimum: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """argparse type: a ``kind`` (``int`` or ``float``) number >= ``minimum``."""
    def parse(value: str):
        number = kind(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {value}")
        return number

    parse.__name__ = kind.__name__  # argparse's "invalid int value" for text that is no number
    return parse


@contextmanager
def exit_on_value_error(prefix: str = "") -> Iterator[None]:
    """A ``ValueError`` raised inside becomes ``SystemExit(prefix + message)``: the message on stderr, status 1.

    ``prefix`` names the flag or tool when the library's message does not (e.g. ``"--checkpoint: "``).
    """
    try:
        yield
    except ValueError as err:
        raise SystemExit(f"{prefix}{err}") from None
