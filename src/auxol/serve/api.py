"""The JSON HTTP API and the browser page.

=======================  ==============================================================
``POST /api/predict``    multipart form: ``image`` (a file) or ``image_id`` (an image
                         received before), and ``prompts`` (JSON, see
                         :func:`parse_prompts`) -> the mask shown, as a base64 PNG
``POST /api/learn``      multipart form: ``image_id`` and ``mask`` (the corrected mask,
                         a PNG at the image's size, 0/255 or 0/1) -> 202, learning queued
``GET /api/status``      the session's counters (:meth:`ServeSession.status`)
``GET /api/health``      ``{"status": "ok"}``
``GET /``                the browser page (``static/index.html``)
=======================  ==============================================================
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse

from auxol.errors import DataError, PromptError
from auxol.evaluate.metrics import dice
from auxol.online import Prediction
from auxol.prompts import Prompt
from auxol.serve.encoding import decode_image, decode_mask, mask_png_base64
from auxol.serve.session import ServeSession

PROMPTS_FORMAT = '[{"box": [x1, y1, x2, y2]}, {"points": [[x, y], ...], "labels": [1, 0, ...]}]'


def parse_prompts(text: str) -> list[Prompt]:
    """Prompts from JSON: a list of objects, each a box and/or points with labels, in image pixels.

    The format of ``auxol predict --prompts`` (:meth:`Prompt.from_dict`): each object is
    one object to segment; a box is ``x1, y1, x2, y2`` inclusive, x = column; point
    labels are 1 (foreground, the default) or 0 (background).
    """
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise TypeError("not a list")
        return [Prompt.from_dict(item) for item in items]
    except (ValueError, TypeError, AttributeError) as error:
        raise PromptError(f"prompts: expected JSON like {PROMPTS_FORMAT} ({error})") from None


def prediction_response(key: str, prediction: Prediction) -> dict[str, Any]:
    """What ``POST /api/predict`` returns for image ``key``."""
    height, width = prediction.mask.shape
    return {
        "image_id": key,
        "width": width,
        "height": height,
        "prompts": len(prediction.base_logits),
        "mask": mask_png_base64(prediction.mask),
        "base_mask": mask_png_base64(prediction.base_mask),
        "alpha": prediction.alpha,
        "fused": prediction.alpha is not None,
        "mask_pixels": int(prediction.mask.sum()),
        "base_pixels": int(prediction.base_mask.sum()),
        "dice_with_base": dice(prediction.mask, prediction.base_mask),
    }


def api_router(session: ServeSession) -> APIRouter:
    """The routes above, on ``session``."""
    router = APIRouter()

    @router.post("/api/predict")
    def predict(
        prompts: Annotated[str, Form(description=f"JSON: {PROMPTS_FORMAT}")],
        image: Annotated[UploadFile | None, File(description="The image file (png, jpg, tif, ...).")] = None,
        image_id: Annotated[str | None, Form(description="Id of an image received before, instead of a file.")] = None,
    ) -> dict[str, Any]:
        """Segment an image with prompts; the mask returned is the one to correct."""
        if (image is None) == (image_id is None):
            raise DataError("give either an image file ('image') or the id of an image received before ('image_id')")
        parsed = parse_prompts(prompts)
        if image is not None:
            image_id = session.add_image(decode_image(image.file.read(), image.filename or "image"))
        return prediction_response(image_id, session.predict(image_id, parsed))

    @router.post("/api/learn", status_code=202)
    def learn(
        image_id: Annotated[str, Form(description="The image the correction is for.")],
        mask: Annotated[UploadFile, File(description="The corrected mask: PNG at the image's size, 0/255 or 0/1.")],
    ) -> dict[str, Any]:
        """Queue learning from the corrected mask of an image's last shown prediction."""
        corrected = decode_mask(mask.file.read(), mask.filename or "mask")
        return {"image_id": image_id, "status": "queued", "learning_queue": session.learn(image_id, corrected)}

    @router.get("/api/status")
    def status() -> dict[str, Any]:
        return session.status()

    @router.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("auxol.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    return router
