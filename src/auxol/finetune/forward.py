"""The one forward path of fine-tuning, shared by training, validation and the final evaluation.

Images are preprocessed by the model's own recipe (:meth:`PromptableModel.preprocess`),
stacked and encoded in one batch (with grad only when the encoder trains); each image's
prompts are encoded by :meth:`PromptableModel.encode_prompts` and decoded against that
image's features by :meth:`PromptableModel.decode`; the low-resolution logits are mapped
back to the image size by ``model.preprocessing.logits_to_image``, exactly as
:meth:`PromptableModel.segment_many` does at inference.

Without prompts (automatic mode) the sparse embedding is empty and the dense one is the
prompt encoder's no-mask embedding. With ``classes`` foreground classes the first
``classes`` mask tokens of the decoder give one logit map per class; mask token 0 is
the one :meth:`PromptableModel.decode` returns, so one class is plain SAM decoding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from auxol.finetune.data import TrainingItem
from auxol.models import PromptableModel


def automatic_logits(model: PromptableModel, features: torch.Tensor, classes: int) -> torch.Tensor:
    """Low-resolution logits (classes, 1, 256, 256) of one image's features (1, C, h, w), without prompts."""
    sparse, dense = model.prompt_encoder(points=None, boxes=None, masks=None)
    if classes == 1:
        return model.decode(features, sparse, dense)
    masks, _ = model.mask_decoder.predict_masks(
        image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
    )
    return masks[0, :classes, None]


class PromptedSegmenter(nn.Module):
    """Wraps a :class:`PromptableModel` so that one ``forward`` runs a training batch (and DDP can wrap it).

    Args:
        model: the (adapted) model; its ``image_encoder`` runs with grad iff ``encoder_trains``.
        classes: foreground classes of automatic mode (ignored with prompts).
    """

    def __init__(self, model: PromptableModel, encoder_trains: bool, classes: int = 1) -> None:
        super().__init__()
        self.model, self.encoder_trains, self.classes = model, encoder_trains, classes

    def forward(self, items: list[TrainingItem]) -> list[torch.Tensor]:
        """Logits float32 (N_i, H_i, W_i) for each item: one map per prompt, or per class without prompts."""
        model = self.model
        inputs = torch.stack([model.preprocess(item.image) for item in items])
        with torch.set_grad_enabled(self.encoder_trains and torch.is_grad_enabled()):
            features = model.image_encoder(inputs)
        outputs = []
        for index, item in enumerate(items):
            height, width = item.image.shape[:2]
            if item.prompts:
                sparse, dense = model.encode_prompts(item.prompts, (height, width))
                low_res = model.decode(features[index : index + 1], sparse, dense)
            else:
                low_res = automatic_logits(model, features[index : index + 1], self.classes)
            outputs.append(model.preprocessing.logits_to_image(low_res, height, width))
        return outputs


@torch.no_grad()
def predict_automatic(model: PromptableModel, image: np.ndarray, classes: int) -> np.ndarray:
    """Bool (classes, H, W) prediction of automatic mode for the uint8 (H, W, 3) ``image``."""
    embedding = model.embed(image)
    low_res = automatic_logits(model, embedding.features, classes)
    return (model.preprocessing.logits_to_image(low_res, *embedding.image_size) > 0).cpu().numpy()
