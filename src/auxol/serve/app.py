"""The web application: the JSON API, the browser page and the Label Studio backend on one session.

Errors caused by the request answer with a 4xx status and ``{"error": "<one line>"}``:
an unknown image id 404, a correction with no shown prediction to correct 409, a
missing or mistyped field 422, any other bad input (unreadable image or mask, mask of
another size, empty mask, prompt outside the image, bad label config ...) 400.
Stopping the server learns the corrections still queued before it exits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import auxol
from auxol.errors import AuxolError
from auxol.serve.api import api_router
from auxol.serve.labelstudio import LabelStudioBackend, label_studio_router
from auxol.serve.session import NothingToCorrectError, ServeSession, UnknownImageError
from auxol.serve.sources import TaskImages


def error_status(error: AuxolError) -> int:
    """The HTTP status of a user error."""
    if isinstance(error, UnknownImageError):
        return 404
    if isinstance(error, NothingToCorrectError):
        return 409
    return 400


def create_app(session: ServeSession, images: TaskImages | None = None) -> FastAPI:
    """The application serving ``session``; ``images`` reads Label Studio tasks' images (default: local and data: only)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        session.close()

    app = FastAPI(title="auxol", version=auxol.__version__, lifespan=lifespan)

    @app.exception_handler(AuxolError)
    async def user_error(request: Request, error: AuxolError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error_status(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors())
        return JSONResponse({"error": problems}, status_code=422)

    app.include_router(api_router(session))
    app.include_router(label_studio_router(LabelStudioBackend(session, images or TaskImages())))
    return app
