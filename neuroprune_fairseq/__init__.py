"""NeuroPrune for fairseq: load with ``--user-dir neuroprune_fairseq``.

Registers the ``neuroprune_translation`` task (NeuroPrune's elimination, head budgets), the
``dsp_translation`` task (the DSP baseline's learned head gates), the
``neuroprune_label_smoothed_cross_entropy`` criterion (NeuroPrune or l1 penalties), the
``neuroprune_iwslt_de_en`` / ``neuroprune_iwslt_de_en_narrow`` architectures and the
``neuroprune_exported_transformer`` model that loads exported (physically smaller) checkpoints.
"""
import os

# fairseq checkpoints pickle argparse/omegaconf objects, which torch >= 2.6 refuses under its default
# weights_only loading; fairseq-train/-generate load checkpoints after importing this plugin.
# A user's own setting of the variable wins.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from . import architectures, criterion, dsp_task, task  # noqa: E402,F401  (registration)
from . import exported_model  # noqa: E402,F401  (registers the neuroprune_exported_transformer model)
