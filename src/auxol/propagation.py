"""Propagating a prompt through the slices of a volume, as MedSAM2-style annotation does.

A person boxes the structure on one slice (the seed); every next slice is prompted with
the boxes of the mask accepted on its neighbour (one box per component of at least
``min_size`` px, widened by ``box_margin`` of the slice's long side, the rule of
:func:`auxol.prompts.prompts_from_mask`). The walk goes from the seed up to the last
slice, then from the seed down to the first, and stops in a direction at the first
slice whose neighbour's mask holds no such component (the structure has ended).

:func:`propagate` only decides the order and the prompts; the caller segments each slice
and records the accepted mask (the model's, or a person's correction of it) in
``accepted`` before asking for the next one, so the same walk serves ``auxol predict``,
``auxol stream --prompt propagate`` and the service.

With no person checking each slice (``auxol predict``), the model keeps outlining
something in the box after the structure has ended, so :class:`IntensityGate` turns
away a mask whose mean intensity leaves the seed mask's range (beyond ``tolerance``
standard deviations of the seed's pixels, and at least ``floor`` grey levels), which ends
the walk there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping

import numpy as np

from auxol.prompts import Prompt, components, prompts_from_mask


def neighbour_prompts(mask: np.ndarray, min_size: int = 16, box_margin: float = 0.0) -> list[Prompt]:
    """Box prompts for a slice from bool (H, W) ``mask`` accepted on its neighbour; [] when it holds no component."""
    if not components(mask, min_size):
        return []
    return prompts_from_mask(mask, "box", min_size, box_margin)


def propagate(
    slices: int,
    seed: int,
    seed_prompts: list[Prompt],
    accepted: MutableMapping[int, np.ndarray],
    min_size: int = 16,
    box_margin: float = 0.0,
) -> Iterator[tuple[int, list[Prompt]]]:
    """Yield (slice index, its prompts): the seed with ``seed_prompts``, then outward in both directions.

    Before asking for the next item the caller must set ``accepted[index]`` to the bool
    (H, W) mask accepted on the slice just yielded; each later slice is prompted from its
    neighbour's entry (see the module notes).
    """
    if not 0 <= seed < slices:
        raise IndexError(f"seed slice {seed} outside 0..{slices - 1}")
    yield seed, seed_prompts
    for step in (1, -1):
        index = seed + step
        while 0 <= index < slices:
            prompts = neighbour_prompts(accepted[index - step], min_size, box_margin)
            if not prompts:
                break
            yield index, prompts
            index += step


class IntensityGate:
    """Accepts a slice's mask only while it holds the seed's tissue, judged by mean intensity.

    Args:
        pixels: uint8 (H, W) windowed seed slice; seed: bool (H, W) its accepted mask.
        tolerance: accepted distance of a mask's mean from the seed's mean, in standard
            deviations of the seed's pixels; floor: the smallest accepted distance (grey levels).
    """

    def __init__(self, pixels: np.ndarray, seed: np.ndarray, tolerance: float = 3.0, floor: float = 10.0) -> None:
        values = pixels[seed].astype(np.float64)
        self.mean = float(values.mean()) if values.size else 0.0
        self.limit = max(tolerance * float(values.std()) if values.size else 0.0, floor)

    def accepts(self, pixels: np.ndarray, mask: np.ndarray) -> bool:
        """Whether bool (H, W) ``mask`` on uint8 (H, W) ``pixels`` is non-empty with a mean within the seed's range."""
        return bool(mask.any()) and abs(float(pixels[mask].mean()) - self.mean) <= self.limit


def segment_by_propagation(
    segment: Callable[[int, list[Prompt]], np.ndarray],
    slices: int,
    seed: int,
    seed_prompts: list[Prompt],
    min_size: int = 16,
    box_margin: float = 0.0,
) -> dict[int, np.ndarray]:
    """Masks of the slices a propagation reaches, accepting each of ``segment(index, prompts)`` (bool (H, W)) as it is."""
    accepted: dict[int, np.ndarray] = {}
    for index, prompts in propagate(slices, seed, seed_prompts, accepted, min_size, box_margin):
        accepted[index] = segment(index, prompts)
    return accepted
