"""Reading evaluation records (the JSON files written by ``tools.evaluate``) with clear errors."""
import json
from pathlib import Path
from typing import Dict, List, Optional

LEGACY_SPARSITY = "near_zero"  # records written before exact zeros: |w| < eps in the stored (not thresholded) model
REQUIRED = {"name": str, "method": str, "bleu": (int, float), "heads_kept": int, "heads_total": int, "weight_sparsity": (int, float)}


def require(record: dict, path: Path, field: str, kind):
    """The value of a (dotted, e.g. ``topology.ffn.histogram``) field; ``ValueError`` naming the file and
    field when it is missing or not of type ``kind``."""
    value = record
    for key in field.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{path}: field '{field}' missing or not {getattr(kind, '__name__', 'a number')}")
    return value


def load_record(path: Path, needs: Optional[Dict[str, type]] = None) -> dict:
    """One record; ``ValueError`` naming the file and field when it is not a valid record.

    Args:
        path: the JSON file.
        needs: further (dotted) fields and their types that the caller uses, checked like the required ones.
    """
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON record ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a record must be a JSON object")
    for field, kind in {**REQUIRED, **(needs or {})}.items():
        require(record, path, field, kind)
    return record


def sparsity_definition(record: dict) -> str:
    """How a record's ``weight_sparsity`` was counted: ``exact_zero`` (exact zeros of the evaluated model, see
    ``tools.evaluate``) or, for records that do not say, the earlier ``near_zero`` (|w| < eps in the stored model)."""
    return record.get("sparsity_definition", LEGACY_SPARSITY)


def load_records(paths, needs: Optional[Dict[str, type]] = None) -> List[dict]:
    """Several records (see :func:`load_record`); ``ValueError`` when none is given or when their weight sparsity
    was counted in different ways (:func:`sparsity_definition`), which no table or plot may mix."""
    records = [load_record(Path(p), needs) for p in paths]
    if not records:
        raise ValueError("no evaluation records given")
    kinds = {}
    for path, record in zip(paths, records):
        kinds.setdefault(sparsity_definition(record), str(path))
    if len(kinds) > 1:
        raise ValueError("records count weight sparsity in different ways, which one table or plot cannot mix: "
                         + ", ".join(f"'{kind}' (e.g. {path})" for kind, path in kinds.items()))
    return records


def series(record: dict) -> str:
    """The configuration a record belongs to, the same for every seed and head budget of it: the name
    without its ``_s<seed>`` suffix (when the record holds that seed) and then without its ``_k<budget>``
    suffix (when it holds that budget); a name that carries neither, as a record written without seeds,
    stands for its method."""
    name = record["name"]
    seed, budget = record.get("seed"), record.get("budget")
    if seed is None or not name.endswith(f"_s{seed}"):
        return record["method"]
    name = name[: -len(f"_s{seed}")]
    if budget is not None and name.endswith(f"_k{budget}"):
        name = name[: -len(f"_k{budget}")]
    return name
