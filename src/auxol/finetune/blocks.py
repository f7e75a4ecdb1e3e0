"""The attention blocks of SAM-family image encoders, and which of them PEFT adapts.

Both encoder families are enumerated as one flat list of attention blocks, in forward
order, named relative to the image encoder:

- SAM ViT-B/L/H (segment-anything ``ImageEncoderViT``): ``blocks.0`` .. ``blocks.{D-1}``
  (12, 24 or 32 blocks).
- TinyViT (LiteMedSAM, MobileSAM): stage 0 is convolutional and has no attention; the
  attention blocks of stages 1-3 are numbered on: ``layers.1.blocks.0`` is block 0,
  ``layers.1.blocks.1`` block 1, ``layers.2.blocks.0`` block 2, ... ``layers.3.blocks.1``
  block 9 (10 blocks).

The study's default blocks for ViT-B, [0, 1, 10, 11], are the first two and the last two;
that rule is the default for every encoder (TinyViT: [0, 1, 8, 9], the two blocks of
stage 1 and the two of stage 3).
"""

from __future__ import annotations

from torch import nn

from auxol.errors import ConfigError


def encoder_blocks(image_encoder: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every attention block of ``image_encoder`` as (name relative to the encoder, block), in forward order."""
    if hasattr(image_encoder, "blocks"):  # SAM ViT
        return [(f"blocks.{index}", block) for index, block in enumerate(image_encoder.blocks)]
    found = []
    for stage_index, stage in enumerate(image_encoder.layers):  # TinyViT
        for block_index, block in enumerate(getattr(stage, "blocks", [])):
            if hasattr(block, "attn"):
                found.append((f"layers.{stage_index}.blocks.{block_index}", block))
    return found


def default_block_indices(count: int) -> list[int]:
    """The first two and the last two of ``count`` blocks ([0, 1, 10, 11] for ViT-B's 12)."""
    return sorted({0, 1, count - 2, count - 1} & set(range(count)))


def select_blocks(image_encoder: nn.Module, indices: list[int] | None) -> list[tuple[str, nn.Module]]:
    """The chosen attention blocks: ``None`` = the default (first two, last two), ``[]`` = all.

    Raises ConfigError for an index outside the encoder's blocks.
    """
    blocks = encoder_blocks(image_encoder)
    if indices is None:
        indices = default_block_indices(len(blocks))
    elif not indices:
        indices = list(range(len(blocks)))
    outside = [index for index in indices if not 0 <= index < len(blocks)]
    if outside:
        raise ConfigError(f"--blocks: {outside} outside this encoder's attention blocks 0..{len(blocks) - 1}")
    return [blocks[index] for index in sorted(set(indices))]
