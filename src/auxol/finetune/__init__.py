"""Fine-tuning SAM-family models as the SAM fine-tuning study recommends.

One cell of the study's grid is a backbone x parts (decoder, encoder+decoder) x method
(vanilla, LoRA, adapter): :mod:`~auxol.finetune.peft_setup` says what trains,
:mod:`~auxol.finetune.lora` and :mod:`~auxol.finetune.adapters` add the PEFT modules,
:mod:`~auxol.finetune.trainer` runs the recipe, :mod:`~auxol.finetune.merge` saves the
PEFT weights alone and the merged SAM-format state dict, :mod:`~auxol.finetune.mae`
pre-trains the image encoder on unlabelled images.
"""

from auxol.finetune.config import FinetuneConfig
from auxol.finetune.merge import load_peft, merged_state_dict
from auxol.finetune.peft_setup import MethodConfig, parameter_counts, prepare
from auxol.finetune.trainer import run_finetune

__all__ = ["FinetuneConfig", "MethodConfig", "load_peft", "merged_state_dict", "parameter_counts", "prepare", "run_finetune"]
