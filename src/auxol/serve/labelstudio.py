"""A Label Studio ML backend: box and point prompts in, brush masks out, annotations learned.

The protocol of Label Studio's ML backends (``label-studio-ml-backend``), in JSON; the
request bodies are the models below (other fields are ignored, a malformed body is 422):

=====================  ================================================================
``GET /health``        ``{"status": "UP", "model_class": "AuxOL"}``
``POST /setup``        ``{"project": "<id>.<time>", "schema": <label config>, ...}`` ->
                       ``{"model_version": ...}``
``GET /versions``      ``{"versions": [<model version>, ...]}`` (of ``?project=<id>``,
                       else of every project)
``POST /predict``      ``{"project": ..., "tasks": [...], "label_config": ..., "params":
                       {"context": {"result": [...]}}}`` -> ``{"results": [...]}``, one
                       entry per task: ``{"result": [...], "score": ...,
                       "model_version": ...}``, or ``[]`` (no prediction)
``POST /webhook``      ``{"action": "ANNOTATION_CREATED" | "ANNOTATION_UPDATED",
                       "task": ..., "annotation": {"result": [...]}, "project": {"id":
                       ..., "label_config": ...}}`` -> journaled, learning queued;
                       other actions ignored
=====================  ================================================================

Each Label Studio project has a session of its own, ``label-studio-<project id>``
(:mod:`auxol.serve.sessions`). The model version names the session's learner state,
``auxol-<model>-<preset>-<n>`` after n learned images, so Label Studio asks again for
the predictions it stored from an older state.

The label config needs a ``<BrushLabels>`` tag on an ``<Image>``; the masks returned
carry its first label. Prompts come from the interactive context (a rectangle or key
points drawn with a smart tool) or else from the rectangles and key points of the
task's first annotation or prediction that has any. A task without prompts gets no
prediction, and a task whose image cannot be read or whose prompts are bad is left out
(logged with its reason) while the other tasks of the batch get theirs; when every
task of the batch fails, the answer is 400 with the first reason.

The webhook only decodes the annotation's brush mask and journals it (Label Studio
waits one second for a webhook): the session's worker reads the image and learns it
(:meth:`~auxol.serve.session.ServeSession.submit_annotation`), from the mask last shown
for the image if one is waiting, else from a prediction it makes then from the
annotation's rectangles and key points, or from boxes around the mask.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from auxol.errors import AuxolError, DataError
from auxol.prompts import Prompt
from auxol.serve.labelstudio_format import (
    LabelConfig,
    Region,
    brush_result,
    confidence,
    mask_from_results,
    prompts_from_results,
)
from auxol.serve.labelstudio_webhook import WebhookAuthorizer
from auxol.serve.limits import Limits
from auxol.serve.session import ServeSession
from auxol.serve.sessions import Sessions
from auxol.serve.sources import TaskImages

LOG = logging.getLogger("auxol.serve")
LEARN_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
REMEMBERED_IMAGES = 10_000
"""Task image references whose image id the backend remembers (from /predict), so the webhook needs no fetch."""


class Annotation(BaseModel):
    """An annotation or prediction of a task: its regions."""

    id: int | str | None = None
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
    project: str | int | None = None
    tasks: list[Task]
    label_config: str | None = None
    params: Params = Field(default_factory=Params)


class SetupRequest(BaseModel):
    project: str | int | None = None
    label_config: str | None = Field(None, alias="schema")


class Project(BaseModel):
    id: int | str | None = None
    label_config: str | None = None


class WebhookEvent(BaseModel):
    action: str
    task: Task = Field(default_factory=Task)
    annotation: Annotation = Field(default_factory=Annotation)
    project: Project = Field(default_factory=Project)


def project_id(project: str | int | None) -> str:
    """The project id in Label Studio's ``project`` field (``"<id>.<creation time>"`` or the id); ``0`` if absent."""
    text = str(project).partition(".")[0] if project not in (None, "") else "0"
    if not text.isdigit():
        raise DataError(f"project {project!r}: expected a Label Studio project id")
    return text


def task_prompts(task: Task, context: Annotation | None, height: int, width: int) -> list[Prompt]:
    """The prompts of the interactive ``context`` if any, else of the task's first annotation or prediction that has some."""
    for carrier in [context] if context and context.result else task.annotations + task.predictions:
        prompts = prompts_from_results(carrier.result, height, width)
        if prompts:
            return prompts
    return []


class LabelStudioBackend:
    """The ML backend's behaviour on ``sessions``; ``images`` reads the tasks' images, within ``limits``;
    ``webhooks`` gives each project's webhook this server's key (:mod:`auxol.serve.labelstudio_webhook`)."""

    def __init__(self, sessions: Sessions, images: TaskImages, limits: Limits, webhooks: WebhookAuthorizer) -> None:
        self.sessions = sessions
        self.images = images
        self.limits = limits
        self.webhooks = webhooks
        self.label_configs: dict[str, LabelConfig] = {}
        self._image_ids: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def session(self, project: str) -> ServeSession:
        return self.sessions.get(f"label-studio-{project}")

    def model_version(self, session: ServeSession) -> str:
        """The name of the session's learner state: model, preset and the number of images learned."""
        return f"auxol-{session.settings.model}-{session.settings.preset}-{session.learner.images_rectified}"

    def _config(self, project: str, xml: str | None) -> LabelConfig:
        """The label config given (and remember it for the project), else the last one given."""
        if xml:
            self.label_configs[project] = LabelConfig.parse(xml)
        if project not in self.label_configs:
            raise DataError(f"project {project}: no label config yet: Label Studio sends it with /setup and /predict")
        return self.label_configs[project]

    def _remember(self, project: str, reference: str, key: str) -> None:
        with self._lock:
            self._image_ids[project, reference] = key
            self._image_ids.move_to_end((project, reference))
            while len(self._image_ids) > REMEMBERED_IMAGES:
                self._image_ids.popitem(last=False)

    def _known(self, project: str, reference: str) -> str | None:
        with self._lock:
            return self._image_ids.get((project, reference))

    @staticmethod
    def _reference(task: Task, config: LabelConfig) -> str:
        reference = task.data.get(config.image_key)
        if not isinstance(reference, str):
            raise DataError(f"task {task.id}: no image reference under data.{config.image_key}")
        return reference

    def setup(self, request: SetupRequest) -> dict[str, Any]:
        project = project_id(request.project)
        self._config(project, request.label_config)
        self.webhooks.ensure_soon(project)
        return {"model_version": self.model_version(self.session(project))}

    def versions(self, project: str | None) -> dict[str, Any]:
        """The model version of the project's session; without a project (Label Studio 1.23 sends none), of every project's."""
        if project:
            return {"versions": [self.model_version(self.session(project_id(project)))]}
        names = [name for name in self.sessions.names() if name.startswith("label-studio-")]
        return {"versions": [self.model_version(self.sessions.get(name)) for name in names]}

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        project = project_id(request.project)
        config = self._config(project, request.label_config)
        self.webhooks.ensure_soon(project)
        session = self.session(project)
        results, errors = [], []
        for task in request.tasks:
            try:
                results.append(self._predict_task(project, session, task, config, request.params.context))
            except AuxolError as error:
                LOG.warning("POST /predict: task %s left out: %s", task.id, error)
                results.append([])
                errors.append(str(error))
        if errors and len(errors) == len(request.tasks):  # nothing to give: say why
            more = f" (and {len(errors) - 1} more tasks)" if len(errors) > 1 else ""
            raise DataError(f"{errors[0]}{more}")
        return {"results": results, "model_version": self.model_version(session)}

    def _predict_task(
        self, project: str, session: ServeSession, task: Task, config: LabelConfig, context: Annotation | None
    ) -> dict[str, Any] | list:
        """The task's prediction (one brush region), or ``[]`` (no prediction) without prompts."""
        reference = self._reference(task, config)
        key = session.add_image(self.images.read(reference))
        self._remember(project, reference, key)
        height, width = session.image(key).shape[:2]
        prompts = task_prompts(task, context, height, width)
        self.limits.check_prompts(len(prompts), f"task {task.id}")
        self.limits.check_prompts_on(len(prompts), height, width, f"task {task.id}")
        if not prompts:
            return []
        prediction = session.predict(key, prompts)
        version = self.model_version(session)
        return {"result": [brush_result(prediction.mask, config)], "score": confidence(prediction), "model_version": version}

    def webhook(self, event: WebhookEvent) -> dict[str, Any]:
        if event.action not in LEARN_ACTIONS:
            return {"status": "ignored", "action": event.action}
        project = project_id(event.project.id)
        config = self._config(project, event.project.label_config)
        regions = event.annotation.result
        reference = self._reference(event.task, config)
        self.images.check(reference)
        corrected = mask_from_results(regions, self.limits)
        height, width = corrected.shape
        prompts = prompts_from_results(regions, height, width)
        self.limits.check_prompts(len(prompts), "the annotation")
        facts = {"task": event.task.id, "annotation": event.annotation.id, "project": project, "action": event.action}
        answer = self.session(project).submit_annotation(corrected, reference, self._known(project, reference), prompts, facts)
        return {**answer, "session": f"label-studio-{project}"}


def label_studio_router(backend: LabelStudioBackend) -> APIRouter:
    """The routes of the protocol on ``backend``."""
    router = APIRouter()

    @router.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "AuxOL"}

    @router.post("/setup")
    def setup(request: SetupRequest) -> dict[str, Any]:
        return backend.setup(request)

    @router.get("/versions")
    def versions(project: str | None = None) -> dict[str, Any]:
        return backend.versions(project)

    @router.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        return backend.predict(request)

    @router.post("/webhook")
    def webhook(event: WebhookEvent) -> dict[str, Any]:
        return backend.webhook(event)

    return router
