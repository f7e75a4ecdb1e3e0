"""Label Studio's formats: the label config, and result regions to prompts and masks and back.

A task's annotation or prediction holds a list of regions (its ``result``), each a JSON
object with a ``type`` (``rectanglelabels``, ``keypointlabels``, ``brushlabels``, ...)
and a ``value``. Rectangles and key points give positions in percent of the image's
width and height; brush regions carry the mask as brush RLE (:mod:`auxol.serve.rle`)
at ``original_width`` x ``original_height``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import numpy as np

from auxol.errors import DataError
from auxol.online import Prediction
from auxol.prompts import Prompt
from auxol.serve.limits import Limits
from auxol.serve.rle import mask_to_rle, rle_to_mask

Region = dict[str, Any]
BOX_TYPES = ("rectanglelabels", "rectangle")
POINT_TYPES = ("keypointlabels", "keypoint")


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a Label Studio label config the backend uses.

    Attributes:
        brush_name: ``name`` of the ``<BrushLabels>`` tag (a region's ``from_name``).
        image_name: its ``toName``, the ``<Image>`` tag (a region's ``to_name``).
        image_key: the task data key of that image (``value="$image"`` -> ``"image"``).
        label: the first ``<Label value>`` of the ``<BrushLabels>`` tag.
    """

    brush_name: str
    image_name: str
    image_key: str
    label: str

    @classmethod
    def parse(cls, xml: str) -> LabelConfig:
        try:
            tags = list(ElementTree.fromstring(xml).iter())
        except ElementTree.ParseError as error:
            raise DataError(f"label config: not XML ({error})") from None
        brush = next((tag for tag in tags if tag.tag.lower() == "brushlabels"), None)
        if brush is None:
            raise DataError("label config has no <BrushLabels> tag: auxol returns brush masks")
        image_name = brush.get("toName", "")
        image = next((tag for tag in tags if tag.tag.lower() == "image" and tag.get("name") == image_name), None)
        if image is None or not image.get("value", "").startswith("$"):
            raise DataError(f'label config: <BrushLabels> points to {image_name!r}, not to an <Image value="$...">')
        labels = [tag.get("value") for tag in brush if tag.tag.lower() == "label" and tag.get("value")]
        if not labels:
            raise DataError("label config: <BrushLabels> has no <Label value=...>")
        return cls(brush.get("name", ""), image_name, image.get("value")[1:], labels[0])


def _pixel(percent: float, size: int) -> float:
    """A Label Studio coordinate (percent of the image side) in pixels, clipped to 0..size-1."""
    return min(max(float(percent) * size / 100, 0.0), size - 1.0)


def prompts_from_results(results: list[Region], height: int, width: int) -> list[Prompt]:
    """Prompts of the regions on a (height, width) image: each rectangle one, all key points one together.

    Rotation is ignored. A key point is background (label 0) when its region says
    ``"is_positive": false`` (a negative click), else foreground.
    """
    boxes, points, labels = [], [], []
    for result in results:
        kind, value = str(result.get("type", "")).lower(), result.get("value")
        try:
            if kind in BOX_TYPES:
                x, y = value["x"], value["y"]
                corners = (x, y, x + value["width"], y + value["height"])
                boxes.append(Prompt.from_box(tuple(_pixel(v, size) for v, size in zip(corners, (width, height) * 2))))
            elif kind in POINT_TYPES:
                points.append((_pixel(value["x"], width), _pixel(value["y"], height)))
                labels.append(int(bool(result.get("is_positive", True))))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"Label Studio {kind} region: missing or bad value {error}") from None
    return boxes + ([Prompt(points=tuple(points), labels=tuple(labels))] if points else [])


def mask_from_results(results: list[Region], limits: Limits) -> np.ndarray:
    """The union, bool (H, W), of the brush regions' masks (each decoded at its ``original_height`` x ``original_width``).

    Each region's size is checked against ``limits`` before its RLE is decoded.
    """
    masks = []
    for result in results:
        if str(result.get("type", "")).lower() != "brushlabels":
            continue
        try:
            height, width, rle = int(result["original_height"]), int(result["original_width"]), result["value"]["rle"]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"Label Studio brush region: missing or bad value {error}") from None
        limits.check_pixels(width, height, "Label Studio brush region")
        masks.append(rle_to_mask(rle, height, width))
    if not masks:
        raise DataError("the annotation has no brush region (brushlabels, format rle) to learn from")
    if len({mask.shape for mask in masks}) > 1:
        raise DataError("the annotation's brush regions have different sizes")
    return np.logical_or.reduce(masks)


def brush_result(mask: np.ndarray, config: LabelConfig) -> Region:
    """A brush region holding the bool (H, W) ``mask``, labelled with the config's brush label."""
    height, width = mask.shape
    return {
        "from_name": config.brush_name,
        "to_name": config.image_name,
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [config.label]},
    }


def confidence(prediction: Prediction) -> float:
    """The score shown in Label Studio: the mean fused probability of the crops' foreground pixels (0.5..1; 0 if none)."""
    foreground = np.concatenate([crop.fused_prob[crop.fused_prob > 0.5] for crop in prediction.crops])
    return float(foreground.mean()) if foreground.size else 0.0
