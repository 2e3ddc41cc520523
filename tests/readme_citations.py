"""What the READMEs cite: the results paths in each paragraph that states a BLEU or a p-value, the evaluation
records behind them, and whether each record's hypotheses are committed (``NAME.hyp`` in its run folder, with a
``.ref`` beside it) or the run folder's ``hypotheses_not_kept.txt`` lists it, in which case no paragraph may cite a
p-value for it."""
import glob
import json
import re
from pathlib import Path
from typing import List

from neuroprune.tools.cited_pvalues import CITED_P, collapse

PATH = re.compile(r"(?<![\w/.$-])((?:examples/iwslt14_de_en/)?results/[\w./*{},-]*)")
CITES = re.compile(r"BLEU|" + CITED_P.pattern)
NOT_KEPT = "hypotheses_not_kept.txt"


def run_folder(record: Path) -> Path:
    """The folder of a record's run: the one above ``records/``, else the record's own."""
    return record.parent.parent if record.parent.name == "records" else record.parent


def is_evaluation_record(path: Path) -> bool:
    """A ``tools.evaluate`` record: a JSON object with a sacreBLEU signature."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "bleu_signature" in data


def not_kept(record: Path) -> bool:
    """Whether the record's run folder lists it as a record whose hypotheses were not kept."""
    marker = run_folder(record) / NOT_KEPT
    return marker.exists() and record.stem in {line.strip() for line in marker.read_text().splitlines()
                                               if line.strip() and not line.startswith("#")}


def has_hypotheses(record: Path) -> bool:
    """Whether ``NAME.hyp`` lies somewhere in the record's run folder, with a ``.ref`` file beside it."""
    return any(list(hyp.parent.glob("*.ref")) for hyp in run_folder(record).rglob(f"{record.stem}.hyp"))


def records_at(path: Path) -> List[Path]:
    """The evaluation records a cited path stands for: itself, or every one below a cited folder."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if is_evaluation_record(p))
    return [path] if path.suffix == ".json" and is_evaluation_record(path) else []


def problems(readme: Path) -> List[str]:
    """Every cited path that does not exist, every cited record without committed hypotheses, and every p-value
    in a paragraph that cites only records whose hypotheses were not kept."""
    found = []
    for paragraph in re.split(r"\n\s*\n", readme.read_text()):
        paths = {m.rstrip(".,") for m in PATH.findall(paragraph)}
        if not paths or not CITES.search(paragraph):
            continue
        for cited in sorted(paths):
            matches = [Path(p) for p in glob.glob(str(readme.parent / cited))]
            if not matches:
                found.append(f"{readme.name}: {cited} does not exist")
            records = [r for m in matches for r in records_at(m)]
            for record in records:
                if not not_kept(record) and not has_hypotheses(record):
                    found.append(f"{readme.name}: {record} is cited but its hypotheses are not committed "
                                 f"(nor listed in {run_folder(record) / NOT_KEPT})")
            if records and all(not_kept(r) for r in records) and CITED_P.search(collapse(paragraph)):
                found.append(f"{readme.name}: a paragraph citing {cited} gives a p-value, but its hypotheses were not kept")
    return found
