"""Prompts: the box or points a person (or a rule) gives the foundation model.

Coordinates are pixels in the original image frame: x is the column, y is the row.
A box ``(x1, y1, x2, y2)`` spans the pixels ``x1..x2`` and ``y1..y2`` inclusive, the
convention of SAM and MedSAM (the bounding box of a mask is ``min``/``max`` of its
foreground indices).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from auxol.errors import PromptError

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class Prompt:
    """One object to segment: a box, points with labels (1 foreground, 0 background), or both."""

    box: Box | None = None
    points: tuple[Point, ...] = ()
    labels: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.box is None and not self.points:
            raise PromptError("a prompt needs a box or at least one point")
        if len(self.points) != len(self.labels):
            raise PromptError(f"{len(self.points)} points but {len(self.labels)} labels")
        if any(label not in (0, 1) for label in self.labels):
            raise PromptError(f"point labels must be 1 (foreground) or 0 (background), got {self.labels}")
        if self.box is not None:
            x1, y1, x2, y2 = self.box
            if x2 < x1 or y2 < y1:
                raise PromptError(f"box {self.box} has x2 < x1 or y2 < y1")

    @classmethod
    def from_box(cls, box: Box) -> Prompt:
        return cls(box=tuple(float(v) for v in box))

    @classmethod
    def from_point(cls, x: float, y: float, label: int = 1) -> Prompt:
        return cls(points=((float(x), float(y)),), labels=(int(label),))

    def check_inside(self, height: int, width: int, source: str = "prompt") -> None:
        """Raise :class:`PromptError` naming ``source`` if any coordinate lies outside an image of this size."""
        coords = list(self.points)
        if self.box is not None:
            coords += [(self.box[0], self.box[1]), (self.box[2], self.box[3])]
        for x, y in coords:
            if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
                raise PromptError(f"{source}: ({x:g}, {y:g}) lies outside the {width}x{height} image")

    def to_dict(self) -> dict:
        out: dict = {}
        if self.box is not None:
            out["box"] = list(self.box)
        if self.points:
            out["points"] = [list(p) for p in self.points]
            out["labels"] = list(self.labels)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Prompt:
        """Inverse of :meth:`to_dict`; ``labels`` default to 1 for every point."""
        points = tuple(tuple(float(v) for v in p) for p in data.get("points", []))
        labels = tuple(int(v) for v in data.get("labels", [1] * len(points)))
        box = data.get("box")
        return cls(box=tuple(float(v) for v in box) if box is not None else None, points=points, labels=labels)
