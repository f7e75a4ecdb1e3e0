"""A Label Studio ML backend on the session: box and point prompts in, brush masks out, corrections learned.

The protocol of Label Studio's ML backends (``label-studio-ml-backend``), in JSON; the
request bodies are the models below (other fields are ignored, a malformed body is 422):

=====================  ================================================================
``GET /health``        ``{"status": "UP", "model_class": "AuxOL"}``
``POST /setup``        ``{"schema": <label config>, ...}`` -> ``{"model_version": ...}``
``POST /predict``      ``{"tasks": [...], "label_config": ..., "params": {"context":
                       {"result": [...]}}}`` -> ``{"results": [{"result": [...],
                       "score": ..., "model_version": ...}, ...]}``, one per task
``POST /webhook``      ``{"action": "ANNOTATION_CREATED" | "ANNOTATION_UPDATED",
                       "task": ..., "annotation": {"result": [...]}, "project":
                       {"label_config": ...}}`` -> learning queued; other actions ignored
=====================  ================================================================

The label config needs a ``<BrushLabels>`` tag on an ``<Image>``; the masks returned
carry its first label. Prompts come from the interactive context (a rectangle or key
points drawn with a smart tool) or else from the rectangles and key points of the
task's first annotation or prediction that has any. A task without prompts gets an empty
result. An annotation received by the webhook is learned from the brush mask (the union
of its brush regions) against the mask last shown for the image; when none is waiting
because the image was never predicted, it is first predicted from the annotation's
rectangles and key points, or from boxes around the mask
(:func:`auxol.prompts.prompts_from_mask`). An image is learned once: an update of an
annotation already learned replaces ``corrected/<id>.png`` but is not learned again,
since a new prediction of the image would already know its label (its fusion weight
would leak into the alpha history).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from auxol.errors import DataError
from auxol.prompts import DEFAULT_BOX_MARGIN, Prompt, prompts_from_mask
from auxol.serve.labelstudio_format import (
    LabelConfig,
    Region,
    brush_result,
    confidence,
    mask_from_results,
    prompts_from_results,
)
from auxol.serve.session import ServeSession
from auxol.serve.sources import TaskImages

LEARN_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


class Annotation(BaseModel):
    """An annotation or prediction of a task: its regions."""

    result: list[Region] = Field(default_factory=list)


class Task(BaseModel):
    """A task: its data (the image reference under the label config's key) and what it carries."""

    id: int | str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    annotations: list[Annotation] = Field(default_factory=list)
    predictions: list[Annotation] = Field(default_factory=list)


class Params(BaseModel):
    """``params`` of a predict request; ``context`` holds the regions drawn with a smart tool."""

    context: Annotation | None = None


class PredictRequest(BaseModel):
    tasks: list[Task]
    label_config: str | None = None
    params: Params = Field(default_factory=Params)


class SetupRequest(BaseModel):
    label_config: str | None = Field(None, alias="schema")


class Project(BaseModel):
    label_config: str | None = None


class WebhookEvent(BaseModel):
    action: str
    task: Task = Field(default_factory=Task)
    annotation: Annotation = Field(default_factory=Annotation)
    project: Project = Field(default_factory=Project)


def task_prompts(task: Task, context: Annotation | None, height: int, width: int) -> list[Prompt]:
    """The prompts of the interactive ``context`` if any, else of the task's first annotation or prediction that has some."""
    for carrier in [context] if context and context.result else task.annotations + task.predictions:
        prompts = prompts_from_results(carrier.result, height, width)
        if prompts:
            return prompts
    return []


class LabelStudioBackend:
    """The ML backend's behaviour on a session; ``images`` reads the tasks' images."""

    def __init__(self, session: ServeSession, images: TaskImages) -> None:
        self.session = session
        self.images = images
        self.model_version = f"auxol-{session.settings.model}-{session.settings.preset}"
        self.label_config: LabelConfig | None = None

    def _config(self, xml: str | None) -> LabelConfig:
        """The label config given (and remember it), else the last one given."""
        if xml:
            self.label_config = LabelConfig.parse(xml)
        if self.label_config is None:
            raise DataError("no label config yet: Label Studio sends it with /setup and /predict")
        return self.label_config

    def _task_image(self, task: Task, config: LabelConfig) -> str:
        """Read the task's image into the session; returns its id."""
        reference = task.data.get(config.image_key)
        if not isinstance(reference, str):
            raise DataError(f"task {task.id}: no image reference under data.{config.image_key}")
        return self.session.add_image(self.images.read(reference))

    def setup(self, request: SetupRequest) -> dict[str, Any]:
        self._config(request.label_config)
        return {"model_version": self.model_version}

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        config = self._config(request.label_config)
        results = [self._predict_task(task, config, request.params.context) for task in request.tasks]
        return {"results": results, "model_version": self.model_version}

    def _predict_task(self, task: Task, config: LabelConfig, context: Annotation | None) -> dict[str, Any]:
        key = self._task_image(task, config)
        height, width = self.session.image(key).shape[:2]
        prompts = task_prompts(task, context, height, width)
        if not prompts:
            return {"result": [], "score": 0.0, "model_version": self.model_version}
        prediction = self.session.predict(key, prompts)
        result = [brush_result(prediction.mask, config)]
        return {"result": result, "score": confidence(prediction), "model_version": self.model_version}

    def webhook(self, event: WebhookEvent) -> dict[str, Any]:
        if event.action not in LEARN_ACTIONS:
            return {"status": "ignored", "action": event.action}
        config = self._config(event.project.label_config)
        regions = event.annotation.result
        key = self._task_image(event.task, config)
        corrected = self.session.check_correction(key, mask_from_results(regions))
        if self.session.update_learned(key, corrected):
            return {"status": "saved, already learned", "image_id": key, "learning_queue": self.session.queued()}
        if not self.session.has_prediction(key):
            height, width = corrected.shape
            prompts = prompts_from_results(regions, height, width)
            self.session.predict(key, prompts or prompts_from_mask(corrected, "box", box_margin=DEFAULT_BOX_MARGIN))
        queued = self.session.learn(key, corrected, source="label-studio")
        return {"status": "queued", "image_id": key, "learning_queue": queued}


def label_studio_router(backend: LabelStudioBackend) -> APIRouter:
    """The four routes of the protocol on ``backend``."""
    router = APIRouter()

    @router.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "AuxOL"}

    @router.post("/setup")
    def setup(request: SetupRequest) -> dict[str, Any]:
        return backend.setup(request)

    @router.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        return backend.predict(request)

    @router.post("/webhook")
    def webhook(event: WebhookEvent) -> dict[str, Any]:
        return backend.webhook(event)

    return router
