"""Fine-tuning SAM-family models as the SAM fine-tuning study recommends.

One cell of the study's grid is a backbone x parts (decoder, encoder+decoder) x method
(vanilla, LoRA, adapter): :mod:`~auxol.finetune.peft_setup` says what trains,
:mod:`~auxol.finetune.lora` and :mod:`~auxol.finetune.adapters` add the PEFT modules,
:mod:`~auxol.finetune.trainer` runs the recipe, :mod:`~auxol.finetune.merge` saves the
PEFT weights alone and the merged SAM-format state dict, :mod:`~auxol.finetune.mae`
pre-trains the image encoder on unlabelled images. :mod:`~auxol.finetune.config` holds the
configuration types and imports no ``peft``, so the command line reads it at no cost;
import the other modules by name (``from auxol.finetune.trainer import run_finetune``).
"""
