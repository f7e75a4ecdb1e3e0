"""The credentials of the webhook Label Studio creates for this backend, set by the backend itself.

When a project connects an ML backend, Label Studio 1.23 creates a webhook to
``<backend URL>/webhook`` without the backend's credentials (the ML backend's basic
auth is not applied to it), so a server started with ``--api-key`` refuses every
annotation with 401 and learns nothing. With a key and a Label Studio token (to fetch
task images, :mod:`auxol.serve.sources`), the backend adds ``Authorization: Bearer
<key>`` to that webhook: at ``/setup`` and ``/predict``, until it is done for the project
(the webhook exists only once the backend is saved, after the first ``/setup``).

It touches only the webhook whose URL is ``<URL of the project's ML backend>/webhook``,
and only while the project has a single ML backend (this one, since Label Studio asks
it for the project): with several it cannot tell which one is itself, so it never sends
the key to another backend, and logs that the header is to be added by hand.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

from auxol.errors import DataError
from auxol.serve.sources import LabelStudioAuth

LOG = logging.getLogger("auxol.serve")
ANSWER_LIMIT = 1 << 20
"""Bytes read at most from one Label Studio API answer."""


class WebhookAuthorizer:
    """Sets ``Authorization: Bearer <api_key>`` on each project's ML webhook in Label Studio (see the module docstring).

    Args:
        auth: Label Studio's address and token, or None (then nothing is done).
        api_key: the key of this server, or None (then nothing is needed).
    """

    def __init__(self, auth: LabelStudioAuth | None, api_key: str | None) -> None:
        self.auth = auth
        self.api_key = api_key
        self._settled: set[str] = set()  # projects whose webhook is authorized, or cannot be by us
        self._lock = threading.Lock()

    def ensure_soon(self, project: str) -> None:
        """:meth:`ensure` in a thread of its own, unless settled: Label Studio's request that calls it never waits."""
        if self.auth is not None and self.api_key and project not in self._settled:
            threading.Thread(target=self.ensure, args=(project,), name="auxol-ls-webhook", daemon=True).start()

    def ensure(self, project: str) -> None:
        """Authorize project ``project``'s webhook if that is not settled yet; problems are logged, never raised."""
        if self.auth is None or not self.api_key:
            return
        with self._lock:
            if project in self._settled:
                return
            try:
                settled = self._authorize(project)
            except (DataError, urllib.error.HTTPError, ValueError, KeyError, TypeError) as error:
                LOG.warning("Label Studio project %s: cannot set the webhook's Authorization header (%s); "
                            "add 'Authorization: Bearer <key>' to it in Settings > Webhooks", project, error)
                settled = True
            if settled:
                self._settled.add(project)

    def _authorize(self, project: str) -> bool:
        """Whether the project's webhook is settled (authorized now, already, or not ours to touch)."""
        backends = self._api("GET", f"/api/ml/?project={project}")
        if not backends:
            return False  # not saved yet: try again at the next request
        if len(backends) > 1:
            LOG.warning("Label Studio project %s has %d ML backends: add 'Authorization: Bearer <key>' to auxol's "
                        "webhook in Settings > Webhooks (auxol cannot tell which is its own)", project, len(backends))
            return True
        url = backends[0]["url"].rstrip("/") + "/webhook"
        hooks = [hook for hook in self._api("GET", f"/api/webhooks/?project={project}") if hook.get("url") == url]
        if not hooks:
            return False  # not created yet: try again at the next request
        wanted = f"Bearer {self.api_key}"
        for hook in hooks:
            headers = dict(hook.get("headers") or {})
            if headers.get("Authorization") != wanted:
                self._api("PATCH", f"/api/webhooks/{hook['id']}/", {"headers": {**headers, "Authorization": wanted}})
                LOG.info("Label Studio project %s: webhook %s now sends the API key", project, url)
        return True

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.auth.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        return json.loads(self.auth.send(request, ANSWER_LIMIT))
