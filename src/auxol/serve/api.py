"""The JSON HTTP API and the browser page.

Every route but the health check takes an optional ``session`` (a form field or a query
parameter; default ``default``, see :mod:`auxol.serve.sessions`).

=========================================  ==============================================
``POST /api/predict``                      multipart form: ``image`` (a file), ``image_id``
                                           (an image received before) or ``volume_id``
                                           and ``slice`` (a slice of a volume), and
                                           ``prompts`` (JSON, see :func:`parse_prompts`)
                                           or, for a slice, ``propagate`` (``previous``
                                           or ``next``: the boxes of that neighbour's
                                           accepted mask) -> the mask shown, as a base64 PNG
``POST /api/learn``                        multipart form: ``image_id`` (or ``volume_id``
                                           and ``slice``) and ``mask`` (the corrected
                                           mask, a PNG at the image's size, 0/255 or
                                           0/1) -> 202 once it is journaled on disk,
                                           learning queued; 200 ``already journaled``
                                           for the same mask sent again
``POST /api/volumes``                      multipart form: ``volume`` (a ``.nii``,
                                           ``.nii.gz`` or a ``.zip`` of one DICOM
                                           series), optional ``window`` (``LOW,HIGH``)
                                           -> 201 the volume's id and size (200 if it was
                                           uploaded before)
``GET /api/volumes``                       ``{"volumes": [summary, ...]}`` of the session
``GET /api/volumes/{id}``                  its summary and each slice's state and image id
``GET /api/volumes/{id}/slices/{k}``       slice k as a base64 PNG, with its accepted mask
``GET /api/volumes/{id}/labels.nii.gz``    the label volume (uint8 0/1, the input's grid)
``GET /api/volumes/{id}/labels.seg.dcm``   for a DICOM series: the label volume as a DICOM
                                           SEG referencing its slices (``structure``:
                                           the segment's name)
``GET /api/status``                        the session's counters (:meth:`ServeSession.status`)
``GET /api/sessions``                      ``{"sessions": [{"name": ..., counters}, ...]}``
``GET /api/health``                        ``{"status": "ok"}``
``GET /``                                  the browser page (``static/index.html``)
=========================================  ==============================================

Volumes are :mod:`auxol.serve.volumes` (each slice an image of the session).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse, HTMLResponse

from auxol.data.volumes import parse_window
from auxol.errors import DataError, PromptError
from auxol.evaluate.metrics import dice
from auxol.online import Prediction
from auxol.prompts import Prompt
from auxol.serve.encoding import decode_image, decode_mask, image_png_base64, mask_png_base64
from auxol.serve.limits import Limits
from auxol.serve.session import ServeSession
from auxol.serve.sessions import Sessions
from auxol.serve.volumes import Neighbour, SessionVolumes

SessionField = Annotated[str | None, Form(description="Session name (default: 'default'); or the query parameter.")]
VolumeField = Annotated[str | None, Form(description="Id of a volume received before (POST /api/volumes), with 'slice'.")]
SliceField = Annotated[int | None, Form(alias="slice", description="Axial slice index of the volume, 0 = the most inferior.")]

STRUCTURE_NAME = re.compile(r"[A-Za-z0-9_ -]{1,64}")
"""A DICOM SEG's segment label (a DICOM LO value: at most 64 characters)."""

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
        "prompts": len(prediction.click_boxes),
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

    def required_slice(index: int | None) -> int:
        if index is None:
            raise DataError("a volume's slice needs 'slice' (its index) with 'volume_id'")
        return index

    @router.post("/api/predict")
    def predict(
        request: Request,
        prompts: Annotated[str | None, Form(description=f"JSON: {PROMPTS_FORMAT}")] = None,
        image: Annotated[UploadFile | None, File(description="The image file (png, jpg, tif, ...).")] = None,
        image_id: Annotated[str | None, Form(description="Id of an image received before, instead of a file.")] = None,
        volume_id: VolumeField = None,
        slice_index: SliceField = None,
        propagate: Annotated[
            Neighbour | None, Form(description="A volume slice instead of prompts: the boxes of the previous or next slice's mask.")
        ] = None,
        session: SessionField = None,
    ) -> dict[str, Any]:
        """Segment an image (or a volume's slice) with prompts; the mask returned is the one to correct."""
        served = pick(request, session)
        if sum(source is not None for source in (image, image_id, volume_id)) != 1:
            raise DataError(
                "give either an image file ('image'), the id of an image received before ('image_id') "
                "or a volume's slice ('volume_id' and 'slice')"
            )
        if (prompts is None) == (propagate is None):
            raise PromptError(f"give prompts (JSON like {PROMPTS_FORMAT}) or, for a volume's slice, propagate=previous|next")
        if volume_id is not None:
            return predict_slice(served, volume_id, slice_index, prompts, propagate)
        if propagate is not None:
            raise PromptError("propagate is for a volume's slice: give volume_id and slice")
        parsed = parse_prompts(prompts, limits)
        uploaded = image is not None
        picture = decode_image(image.file.read(), image.filename or "image", limits) if uploaded else served.image(image_id)
        limits.check_prompts_on(len(parsed), *picture.shape[:2], image.filename or "image" if uploaded else f"image {image_id}")
        image_id = served.add_image(picture) if uploaded else image_id
        return prediction_response(image_id, served.predict(image_id, parsed))

    def predict_slice(
        served: ServeSession, volume_id: str, index: int | None, prompts: str | None, propagate: Neighbour | None
    ) -> dict[str, Any]:
        volumes = SessionVolumes(served)
        record = volumes.get(volume_id)
        index = required_slice(index)
        key = record.image_id(index)
        parsed = parse_prompts(prompts, limits) if prompts is not None else volumes.propagated_prompts(record, index, propagate)
        limits.check_prompts(len(parsed), f"slice {index}")
        limits.check_prompts_on(len(parsed), *record.shape[1:], f"slice {index} of volume {volume_id}")
        answer = prediction_response(key, volumes.predict(record, index, parsed))
        return {**answer, "volume_id": volume_id, "slice": index, "prompts_used": [prompt.to_dict() for prompt in parsed]}

    @router.post("/api/learn", status_code=202)
    def learn(
        request: Request,
        response: Response,
        mask: Annotated[UploadFile, File(description="The corrected mask: PNG at the image's size, 0/255 or 0/1.")],
        image_id: Annotated[str | None, Form(description="The image the correction is for.")] = None,
        volume_id: VolumeField = None,
        slice_index: SliceField = None,
        session: SessionField = None,
    ) -> dict[str, Any]:
        """Journal the corrected mask of an image's (or a volume slice's) last shown prediction; learning is queued."""
        served = pick(request, session)
        if (image_id is None) == (volume_id is None):
            raise DataError("give either the image's id ('image_id') or a volume's slice ('volume_id' and 'slice')")
        corrected = decode_mask(mask.file.read(), mask.filename or "mask", limits)
        if volume_id is not None:
            volumes = SessionVolumes(served)
            answer = volumes.learn(volumes.get(volume_id), required_slice(slice_index), corrected)
        else:
            answer = served.learn(image_id, corrected)
        if answer["status"] != "queued":
            response.status_code = 200
        return answer

    @router.post("/api/volumes", status_code=201)
    def upload_volume(
        request: Request,
        response: Response,
        volume: Annotated[UploadFile, File(description="A .nii or .nii.gz file, or a .zip of one DICOM series' slice files.")],
        window: Annotated[str | None, Form(description="LOW,HIGH intensities mapped to 0..255 (default: -160,240 for CT, else percentiles).")] = None,
        session: SessionField = None,
    ) -> dict[str, Any]:
        """Receive a volume: its slices become images of the session; returns its id (see :mod:`auxol.serve.volumes`)."""
        served = pick(request, session)
        name = volume.filename or "volume"
        volumes = SessionVolumes(served)
        record, created = volumes.receive(volume.file, name, limits, parse_window(window, "window"))
        if not created:
            response.status_code = 200
        return volumes.summary(record)

    @router.get("/api/volumes")
    def list_volumes(request: Request) -> dict[str, Any]:
        volumes = SessionVolumes(pick(request))
        return {"volumes": [volumes.summary(volumes.get(key)) for key in volumes.keys()]}

    @router.get("/api/volumes/{volume_id}")
    def volume_details(request: Request, volume_id: str) -> dict[str, Any]:
        volumes = SessionVolumes(pick(request))
        record = volumes.get(volume_id)
        return {**volumes.summary(record), "slice_states": volumes.slice_states(record), "image_ids": list(record.image_ids)}

    @router.get("/api/volumes/{volume_id}/slices/{index}")
    def volume_slice(request: Request, volume_id: str, index: int) -> dict[str, Any]:
        """Slice ``index`` as the model sees it (base64 PNG) and its accepted mask (null if none), for the browser."""
        served = pick(request)
        volumes = SessionVolumes(served)
        record = volumes.get(volume_id)
        key = record.image_id(index)
        accepted = volumes.accepted(record, index)
        return {
            "volume_id": volume_id, "slice": index, "image_id": key, "image": image_png_base64(served.image(key)),
            "state": volumes.slice_states(record)[index], "mask": None if accepted is None else mask_png_base64(accepted),
        }

    @router.get("/api/volumes/{volume_id}/labels.nii.gz")
    def volume_labels(request: Request, volume_id: str) -> FileResponse:
        """The label volume: uint8 0/1 NIfTI in the input's grid and affine (accepted masks; 0 elsewhere)."""
        volumes = SessionVolumes(pick(request))
        record = volumes.get(volume_id)
        path = volumes.write_labels(record)
        return FileResponse(path, media_type="application/gzip", filename=record.labels_name(".nii.gz"))

    @router.get("/api/volumes/{volume_id}/labels.seg.dcm")
    def volume_labels_seg(request: Request, volume_id: str, structure: str = "structure") -> FileResponse:
        """The label volume of a DICOM series as a DICOM SEG referencing its slices; ``structure`` names the segment."""
        if not STRUCTURE_NAME.fullmatch(structure):
            raise DataError(f"structure {structure!r}: use 1 to 64 letters, digits, spaces, '_' or '-'")
        volumes = SessionVolumes(pick(request))
        record = volumes.get(volume_id)
        path = volumes.write_labels_seg(record, structure)
        return FileResponse(path, media_type="application/dicom", filename=record.labels_name(".seg.dcm"))

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
