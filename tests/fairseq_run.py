"""Helpers for tests that drive the real fairseq command-line tools on tiny data."""
import os
import random
import subprocess
import sys
from pathlib import Path

import torch

import neuroprune_fairseq

PLUGIN_DIR = str(Path(neuroprune_fairseq.__file__).parent)
BIN = Path(sys.executable).parent
TINY_MODEL = [
    "--arch", "neuroprune_iwslt_de_en_narrow",
    "--encoder-embed-dim", "48", "--decoder-embed-dim", "48",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--share-all-embeddings", "--dropout", "0.0",
]


def tool_env() -> dict:
    """The environment the fairseq console scripts run in: this interpreter's bin first on PATH, one thread."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")


def run(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a fairseq console script from this interpreter's environment; output captured as text."""
    proc = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=tool_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_toy_corpus(directory: Path, sizes=(("train", 240), ("valid", 24), ("test", 16)), seed=0) -> None:
    """A learnable toy language pair: German-like words map one-to-one to English-like words, reversed."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(40)]
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in sizes:
        src, tgt = [], []
        for _ in range(count):
            words = [rng.choice(vocab) for _ in range(rng.randint(3, 8))]
            src.append(" ".join(words))
            tgt.append(" ".join("e" + w[1:] for w in reversed(words)))
        (directory / f"{split}.de").write_text("\n".join(src) + "\n")
        (directory / f"{split}.en").write_text("\n".join(tgt) + "\n")


def preprocess(text_dir: Path, bin_dir: Path) -> None:
    run(
        "fairseq-preprocess", "--source-lang", "de", "--target-lang", "en",
        "--trainpref", str(text_dir / "train"), "--validpref", str(text_dir / "valid"),
        "--testpref", str(text_dir / "test"), "--destdir", str(bin_dir), "--joined-dictionary", "--workers", "1",
    )


def train_args(bin_dir: Path, save_dir: Path, *extra: str, task="neuroprune_translation",
               criterion="neuroprune_label_smoothed_cross_entropy") -> list:
    return [
        str(bin_dir), "--user-dir", PLUGIN_DIR, "--task", task,
        "--criterion", criterion, "--label-smoothing", "0.1",
        *TINY_MODEL, "--optimizer", "adam", "--lr", "0.002", "--max-tokens", "600", "--cpu",
        "--save-dir", str(save_dir), "--no-progress-bar", "--log-format", "simple", "--log-interval", "1",
        "--seed", "1", "--num-workers", "0", *extra,
    ]


def config_in_process(tmp_path, *extra, model_args=TINY_MODEL, data_bin=None):
    """The training config fairseq's own flag parsing gives, on a 20-word dictionary written to ``tmp_path``
    (or on the dictionaries of an existing fairseq-preprocess folder ``data_bin``)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    if data_bin is None:
        for lang in ("de", "en"):
            (tmp_path / f"dict.{lang}.txt").write_text("".join(f"w{i} 1\n" for i in range(20)))
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data_bin or tmp_path), "--user-dir", PLUGIN_DIR, "--task", "neuroprune_translation", "-s", "de", "-t", "en",
        "--criterion", "neuroprune_label_smoothed_cross_entropy", "--label-smoothing", "0.1", *model_args, *extra,
    ])
    return convert_namespace_to_omegaconf(args)


def build_in_process(tmp_path, *extra, model_args=TINY_MODEL, data_bin=None):
    """Task, model and criterion of :func:`config_in_process`'s config, the model seeded."""
    from fairseq import tasks

    cfg = config_in_process(tmp_path, *extra, model_args=model_args, data_bin=data_bin)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(0)
    return task, task.build_model(cfg.model), task.build_criterion(cfg.criterion)


def random_sample(task):
    """A random 3-sentence batch in fairseq's sample format."""
    torch.manual_seed(1)
    d = task.target_dictionary
    src = torch.randint(d.nspecial, len(d), (3, 5))
    tgt = torch.randint(d.nspecial, len(d), (3, 4))
    prev = torch.cat([torch.full((3, 1), d.eos()), tgt[:, :-1]], 1)
    return {"net_input": {"src_tokens": src, "src_lengths": torch.full((3,), 5), "prev_output_tokens": prev},
            "target": tgt, "ntokens": tgt.numel(), "nsentences": 3}
