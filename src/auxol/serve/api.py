"""The JSON HTTP API and the browser page.

Every route but the health check takes an optional ``session`` (a form field or a query
parameter; default ``default``, see :mod:`auxol.serve.sessions`).

=======================  ==============================================================
``POST /api/predict``    multipart form: ``image`` (a file) or ``image_id`` (an image
                         received before), and ``prompts`` (JSON, see
                         :func:`parse_prompts`) -> the mask shown, as a base64 PNG
``POST /api/learn``      multipart form: ``image_id`` and ``mask`` (the corrected mask,
                         a PNG at the image's size, 0/255 or 0/1) -> 202 once it is
                         journaled on disk, learning queued; 200 ``already journaled``
                         for the same mask sent again
``GET /api/status``      the session's counters (:meth:`ServeSession.status`)
``GET /api/sessions``    ``{"sessions": [{"name": ..., counters}, ...]}``
``GET /api/health``      ``{"status": "ok"}``
``GET /``                the browser page (``static/index.html``)
=======================  ==============================================================
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse

from auxol.errors import DataError, PromptError
from auxol.evaluate.metrics import dice
from auxol.online import Prediction
from auxol.prompts import Prompt
from auxol.serve.encoding import decode_image, decode_mask, mask_png_base64
from auxol.serve.limits import Limits
from auxol.serve.session import ServeSession
from auxol.serve.sessions import Sessions

SessionField = Annotated[str | None, Form(description="Session name (default: 'default'); or the query parameter.")]

PROMPTS_FORMAT = '[{"box": [x1, y1, x2, y2]}, {"points": [[x, y], ...], "labels": [1, 0, ...]}]'


def _numbers(value: Any, count: int | None, what: str) -> list[float]:
    """``value`` as a list of finite numbers (``count`` of them unless None), else TypeError naming ``what``."""
    if not isinstance(value, list) or (count is not None and len(value) != count):
        raise TypeError(f"{what} must be a list of {count or 'some'} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in value):
        raise TypeError(f"{what} must hold finite numbers")
    return value


def _prompt(item: Any) -> Prompt:
    """One prompt object, checked field by field before :meth:`Prompt.from_dict`."""
    if not isinstance(item, dict) or not set(item) <= {"box", "points", "labels"}:
        raise TypeError("each prompt must be an object with 'box' and/or 'points' (and 'labels')")
    if "box" in item:
        _numbers(item["box"], 4, "a box")
    if not isinstance(item.get("points", []), list):
        raise TypeError("'points' must be a list of [x, y]")
    for point in item.get("points", []):
        _numbers(point, 2, "a point")
    if "labels" in item and not (isinstance(item["labels"], list) and all(v in (0, 1) for v in item["labels"])):
        raise TypeError("'labels' must be a list of 0 and 1")
    return Prompt.from_dict(item)


def parse_prompts(text: str, limits: Limits) -> list[Prompt]:
    """Prompts from JSON: a list of objects, each a box and/or points with labels, in image pixels.

    The format of ``auxol predict --prompts`` (:meth:`Prompt.from_dict`): each object is
    one object to segment; a box is ``x1, y1, x2, y2`` inclusive, x = column; point
    labels are 1 (foreground, the default) or 0 (background). At most
    ``limits.max_prompts`` objects.
    """
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise TypeError("not a list")
    except (ValueError, TypeError) as error:
        raise PromptError(f"prompts: expected JSON like {PROMPTS_FORMAT} ({error})") from None
    limits.check_prompts(len(items))
    try:
        return [_prompt(item) for item in items]
    except (ValueError, TypeError) as error:
        raise PromptError(f"prompts: expected JSON like {PROMPTS_FORMAT} ({error})") from None


def prediction_response(key: str, prediction: Prediction) -> dict[str, Any]:
    """What ``POST /api/predict`` returns for image ``key``."""
    height, width = prediction.mask.shape
    return {
        "image_id": key,
        "width": width,
        "height": height,
        "prompts": len(prediction.crops),
        "mask": mask_png_base64(prediction.mask),
        "base_mask": mask_png_base64(prediction.base_mask),
        "alpha": prediction.alpha,
        "fused": prediction.alpha is not None,
        "mask_pixels": int(prediction.mask.sum()),
        "base_pixels": int(prediction.base_mask.sum()),
        "dice_with_base": dice(prediction.mask, prediction.base_mask),
    }


def api_router(sessions: Sessions, limits: Limits) -> APIRouter:
    """The routes above, on ``sessions``, within ``limits``."""
    router = APIRouter()

    def pick(request: Request, form_value: str | None = None) -> ServeSession:
        """The session named by the form field, else by the query parameter, else the default one."""
        return sessions.get(form_value or request.query_params.get("session"))

    @router.post("/api/predict")
    def predict(
        request: Request,
        prompts: Annotated[str, Form(description=f"JSON: {PROMPTS_FORMAT}")],
        image: Annotated[UploadFile | None, File(description="The image file (png, jpg, tif, ...).")] = None,
        image_id: Annotated[str | None, Form(description="Id of an image received before, instead of a file.")] = None,
        session: SessionField = None,
    ) -> dict[str, Any]:
        """Segment an image with prompts; the mask returned is the one to correct."""
        served = pick(request, session)
        if (image is None) == (image_id is None):
            raise DataError("give either an image file ('image') or the id of an image received before ('image_id')")
        parsed = parse_prompts(prompts, limits)
        uploaded = image is not None
        picture = decode_image(image.file.read(), image.filename or "image", limits) if uploaded else served.image(image_id)
        limits.check_prompts_on(len(parsed), *picture.shape[:2], image.filename or "image" if uploaded else f"image {image_id}")
        image_id = served.add_image(picture) if uploaded else image_id
        return prediction_response(image_id, served.predict(image_id, parsed))

    @router.post("/api/learn", status_code=202)
    def learn(
        request: Request,
        response: Response,
        image_id: Annotated[str, Form(description="The image the correction is for.")],
        mask: Annotated[UploadFile, File(description="The corrected mask: PNG at the image's size, 0/255 or 0/1.")],
        session: SessionField = None,
    ) -> dict[str, Any]:
        """Journal the corrected mask of an image's last shown prediction; learning is queued."""
        answer = pick(request, session).learn(image_id, decode_mask(mask.file.read(), mask.filename or "mask", limits))
        if answer["status"] != "queued":
            response.status_code = 200
        return answer

    @router.get("/api/status")
    def status(request: Request) -> dict[str, Any]:
        return pick(request).status()

    @router.get("/api/sessions")
    def list_sessions() -> dict[str, Any]:
        return {"sessions": sessions.status()}

    @router.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("auxol.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    return router
