"""``auxol serve``: the annotation loop over HTTP, so that real corrections drive AuxOL.

One server holds one session (:class:`~auxol.serve.session.ServeSession`): the frozen
foundation model, the AuxOL learner and a session folder (:mod:`auxol.serve.store`). A
person (the browser page, the JSON API of :mod:`auxol.serve.api`) or Label Studio
(:mod:`auxol.serve.labelstudio`) asks for a mask with box or point prompts, corrects it
and sends it back; the correction is learned in a background worker and the learner is
saved after each one, so restarting the server on the same folder resumes the session.

Modules: ``app`` (the FastAPI application and its error replies), ``api`` (JSON API and
page), ``labelstudio`` (the ML backend protocol), ``labelstudio_format`` (label config
and result regions), ``rle`` (Label Studio's brush RLE), ``sources`` (where a task's
image comes from), ``session`` (prediction and queued learning), ``settings`` (new vs
resumed session), ``store`` (the folder), ``cache`` (images in memory), ``encoding``
(uploaded bytes, PNG masks, image ids). The command is :mod:`auxol.commands.serve`.
"""

from auxol.serve.app import create_app
from auxol.serve.session import ServeSession
from auxol.serve.settings import ServeSettings, resolve_settings
from auxol.serve.store import SessionFolder

__all__ = ["ServeSession", "ServeSettings", "SessionFolder", "create_app", "resolve_settings"]
