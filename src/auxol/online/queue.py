"""The adaptive online batch: a FIFO of the most recent crops and their rectified masks."""

from __future__ import annotations

from collections import deque

import torch


class OnlineBatch:
    """The last ``capacity`` (input, target) pairs; appending to a full batch drops the oldest.

    Inputs are float32 (C, S, S) auxiliary inputs, targets float32 (1, S, S) 0/1 masks.
    """

    def __init__(self, capacity: int) -> None:
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.pairs)

    def append(self, aux_input: torch.Tensor, target: torch.Tensor) -> None:
        self.pairs.append((aux_input, target))

    def inputs(self) -> list[torch.Tensor]:
        return [aux_input for aux_input, _ in self.pairs]

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, C, S, S) and targets (B, 1, S, S), oldest first; the batch must not be empty."""
        inputs, targets = zip(*self.pairs)
        return torch.stack(inputs), torch.stack(targets)

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        return {"inputs": self.inputs(), "targets": [target for _, target in self.pairs]}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        self.pairs.clear()
        self.pairs.extend(zip(state["inputs"], state["targets"]))
