"""``auxol serve``: the annotation loop over HTTP, so that real corrections drive AuxOL.

One server holds many named sessions (:mod:`auxol.serve.sessions`) sharing one frozen
foundation model; each (:class:`~auxol.serve.session.ServeSession`) has its AuxOL
learner and its folder (:mod:`auxol.serve.store`). A person (the browser page, the JSON
API of :mod:`auxol.serve.api`) or Label Studio (:mod:`auxol.serve.labelstudio`, one
session per project) asks for a mask with box or point prompts, corrects it and sends
it back; the correction is journaled on disk before it is acknowledged
(:mod:`auxol.serve.journal`), learned in order by the session's worker, and the learner
is saved after each one, so a restart (even after ``kill -9``) resumes every session.

Modules: ``app`` (the FastAPI application and its error replies), ``guards`` (API key
and body limit), ``limits`` (the bounds of a request), ``api`` (JSON API and page),
``labelstudio`` (the ML backend protocol), ``labelstudio_format`` (label config and
result regions), ``rle`` (Label Studio's brush RLE), ``sources`` (where a task's image
may come from), ``sessions`` (the named sessions), ``session`` (prediction and durable
learning), ``journal`` (corrections on disk), ``settings`` (new vs resumed session),
``store`` (the folder), ``cache`` (images in memory), ``encoding`` (uploaded bytes, PNG
images and masks, image ids), ``volume_upload`` (an uploaded NIfTI or zipped DICOM series,
within bounds), ``volumes`` (a session's volumes: each slice an image, propagation, the
label volume). The command is :mod:`auxol.commands.serve`.
"""

import importlib

_HOMES = {
    "create_app": "auxol.serve.app",
    "ServeSession": "auxol.serve.session",
    "Sessions": "auxol.serve.sessions",
    "ServeSettings": "auxol.serve.settings",
    "resolve_settings": "auxol.serve.settings",
    "SessionFolder": "auxol.serve.store",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """The names above, imported on first use: FastAPI loads with the server, not with every ``auxol`` command."""
    if name not in _HOMES:
        raise AttributeError(f"module 'auxol.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
