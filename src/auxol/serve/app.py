"""The web application: the JSON API, the browser page and the Label Studio backend, on many sessions.

Errors caused by the request answer with a 4xx status and ``{"error": "<one line>"}``,
logged with the route and the reason: a missing or wrong API key 401, an unknown image
or volume id or route 404, a correction with no shown prediction to correct or a
propagation from a slice with no mask 409, a request over a
limit (:mod:`auxol.serve.limits`) 413, a missing or mistyped field 422, any other bad
input (unreadable image or mask, mask of another size, empty mask, prompt outside the
image, bad label config, task image from a source not allowed, a volume upload that
is not one regular series, a slice index outside the volume ...) 400. An error of the
server itself answers 500 ``{"error": ...}`` and logs its traceback.
Stopping the server stops the sessions' learning workers; what they had not learned
yet is in the sessions' journals and is learned at the next start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

import auxol
from auxol.errors import AuxolError
from auxol.serve.api import api_router
from auxol.serve.guards import LimitBody, RequireApiKey, log_refusal
from auxol.serve.labelstudio import LabelStudioBackend, label_studio_router
from auxol.serve.labelstudio_webhook import WebhookAuthorizer
from auxol.serve.limits import LimitError, Limits
from auxol.serve.session import NothingToCorrectError, UnknownImageError
from auxol.serve.sessions import Sessions
from auxol.serve.sources import TaskImages
from auxol.serve.volumes import NothingToPropagateError

LOG = logging.getLogger("auxol.serve")


def error_status(error: AuxolError) -> int:
    """The HTTP status of a user error."""
    if isinstance(error, UnknownImageError):
        return 404
    if isinstance(error, NothingToCorrectError | NothingToPropagateError):
        return 409
    if isinstance(error, LimitError):
        return 413
    return 400


def create_app(
    sessions: Sessions, images: TaskImages | None = None, limits: Limits | None = None, api_key: str | None = None
) -> FastAPI:
    """The application serving ``sessions``.

    Args:
        sessions: the server's sessions.
        images: reads Label Studio tasks' images (default: ``data:`` URIs only).
        limits: the bounds of one request (default: :class:`Limits`' defaults).
        api_key: the key every route but the health checks needs; None: no key.
    """
    limits = limits or Limits()
    images = images or TaskImages(limits=limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        sessions.close()

    app = FastAPI(title="auxol", version=auxol.__version__, lifespan=lifespan)

    def refuse(request: Request, status: int, reason: str) -> JSONResponse:
        log_refusal(request.method, request.url.path, status, reason)
        return JSONResponse({"error": reason}, status_code=status)

    @app.exception_handler(AuxolError)
    async def user_error(request: Request, error: AuxolError) -> JSONResponse:
        return refuse(request, error_status(error), str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors())
        return refuse(request, 422, problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return refuse(request, error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        LOG.error("%s %s -> 500", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": f"internal error ({type(error).__name__}); see the server log"}, status_code=500)

    app.include_router(api_router(sessions, limits))
    backend = LabelStudioBackend(sessions, images, limits, WebhookAuthorizer(images.auth, api_key))
    app.include_router(label_studio_router(backend))
    app.add_middleware(LimitBody, limit=limits.max_body_bytes, reason=limits.body_error())
    if api_key:
        app.add_middleware(RequireApiKey, key=api_key)  # added last: runs first
    return app
