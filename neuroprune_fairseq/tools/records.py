"""Reading evaluation records (the JSON files written by ``tools.evaluate``) with clear errors."""
import json
from pathlib import Path
from typing import List

REQUIRED = {"name": str, "method": str, "bleu": (int, float), "heads_kept": int, "heads_total": int, "weight_sparsity": (int, float)}


def load_record(path: Path) -> dict:
    """One record; ``ValueError`` naming the file and field when it is not a valid record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON record ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a record must be a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise ValueError(f"{path}: field '{key}' missing or not {getattr(kind, '__name__', 'a number')}")
    return record


def load_records(paths) -> List[dict]:
    records = [load_record(Path(p)) for p in paths]
    if not records:
        raise ValueError("no evaluation records given")
    return records
