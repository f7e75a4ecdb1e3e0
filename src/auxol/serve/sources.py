"""Where a Label Studio task's image may come from, and nowhere else.

A reference is read only from:

- a ``data:[<type>][;base64],<data>`` URI: the image bytes in the URI itself;
- Label Studio, at the address given with ``--label-studio-url``: a URL under that
  address, or a path such as ``/data/upload/...`` or ``/data/local-files/?d=...``
  that is appended to it; fetched with the Label Studio token;
- a local file (a path or a ``file://`` URI) whose resolved path lies inside one of
  the folders given with ``--files-root``.

Anything else (another host, another port, a file outside those folders, a redirect
away from Label Studio) is refused with one message, the same whether or not the
target exists, before it is touched. Fetched bodies are read up to the body limit.

Label Studio tokens (:data:`TOKEN_VARIABLE`): a *personal access token* (Label Studio
1.23's default: a JWT refresh token) is exchanged at ``/api/token/refresh/`` for an
access token sent as ``Authorization: Bearer``, and exchanged again when Label Studio
answers 401 (the access token expired); a *legacy token* is sent as
``Authorization: Token``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from auxol.errors import DataError
from auxol.serve.encoding import decode_image
from auxol.serve.limits import Limits

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
FETCH_TIMEOUT_S = 30.0
REFRESH_PATH = "/api/token/refresh/"


def is_personal_access_token(token: str) -> bool:
    """Whether ``token`` is a JWT (a Label Studio personal access token) rather than a legacy token."""
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects)


class LabelStudioAuth:
    """The ``Authorization`` header for Label Studio at ``url`` with ``token`` (see the module docstring)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self._access: str | None = None
        self._lock = threading.Lock()

    def header(self, renew: bool = False) -> str:
        """The header value; ``renew``: exchange the personal access token again (the last access token expired)."""
        if not is_personal_access_token(self.token):
            return f"Token {self.token}"
        with self._lock:
            if self._access is None or renew:
                self._access = self._exchange()
            return f"Bearer {self._access}"

    def send(self, request: urllib.request.Request, limit: int) -> bytes:
        """The body of Label Studio's answer to ``request`` sent with this token (see :func:`_send`).

        A personal access token is exchanged again, and the request sent once more, when
        Label Studio answers 401 (the access token expired).
        """
        request.add_header("Authorization", self.header())
        try:
            return _send(request, limit)
        except urllib.error.HTTPError as error:
            if error.code != 401 or not is_personal_access_token(self.token):
                raise
        request.add_header("Authorization", self.header(renew=True))
        return _send(request, limit)

    def _exchange(self) -> str:
        request = urllib.request.Request(
            self.url + REFRESH_PATH, data=json.dumps({"refresh": self.token}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            return json.loads(_send(request, 1 << 16))["access"]
        except urllib.error.HTTPError as error:
            raise DataError(
                f"Label Studio refused the personal access token at {REFRESH_PATH} (HTTP {error.code}); "
                f"check ${TOKEN_VARIABLE}"
            ) from None
        except (DataError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"cannot exchange the Label Studio token at {self.url}{REFRESH_PATH} ({error})") from None


class TaskImages:
    """Reads task images from the allowed sources only (see the module docstring).

    Args:
        label_studio_url: Label Studio's address (``http://host:8080``); None: none.
        token: Label Studio token sent with fetches from that address; None: none.
        files_roots: folders whose files may be read.
        limits: bounds of the images (pixels) and of fetched bodies (bytes).
    """

    def __init__(
        self,
        label_studio_url: str | None = None,
        token: str | None = None,
        files_roots: list[str | os.PathLike] | tuple = (),
        limits: Limits | None = None,
    ) -> None:
        self.label_studio_url = label_studio_url.rstrip("/") if label_studio_url else None
        self.auth = LabelStudioAuth(self.label_studio_url, token) if token and self.label_studio_url else None
        self.files_roots = [Path(root).resolve() for root in files_roots]
        self.limits = limits or Limits()

    def _refused(self, reference: str) -> DataError:
        allowed = ["data: URIs"]
        if self.label_studio_url:
            allowed.append(f"Label Studio at {self.label_studio_url}")
        if self.files_roots:
            allowed.append("files under " + ", ".join(str(root) for root in self.files_roots))
        shown = reference if len(reference) <= 120 else reference[:117] + "..."
        return DataError(f"task image {shown!r}: not an allowed source (allowed: {'; '.join(allowed)}; "
                         "see --label-studio-url and --files-root)")

    def check(self, reference: str) -> None:
        """Raise the refusal if ``reference`` is not from an allowed source (nothing is read or fetched)."""
        if not (reference.startswith("data:") or self._label_studio_url(reference) or self._allowed_file(reference)):
            raise self._refused(reference)

    def read(self, reference: str) -> np.ndarray:
        """The uint8 (H, W, 3) RGB image that ``reference`` points to (see the module docstring)."""
        if reference.startswith("data:"):
            return decode_image(_data_uri_bytes(reference), "data: URI", self.limits)
        url = self._label_studio_url(reference)
        if url is not None:
            return decode_image(self._fetch(url), url, self.limits)
        path = self._allowed_file(reference)
        if path is None:
            raise self._refused(reference)
        try:
            data = path.read_bytes() if path.stat().st_size <= self.limits.max_body_bytes else None
        except OSError:
            raise DataError(f"task image {reference!r}: cannot read the file") from None
        if data is None:
            raise DataError(f"task image {reference!r}: {self.limits.body_error().replace('request body', 'file')}")
        return decode_image(data, reference, self.limits)

    def _label_studio_url(self, reference: str) -> str | None:
        """The Label Studio URL of ``reference`` if it is one (a URL under its address, or a path not under a files root)."""
        if self.label_studio_url is None:
            return None
        base = urllib.parse.urlsplit(self.label_studio_url)
        target = urllib.parse.urlsplit(reference)
        if target.scheme in ("http", "https"):
            same_origin = (target.scheme, target.hostname, target.port) == (base.scheme, base.hostname, base.port)
            inside = (target.path + "/").startswith(base.path.rstrip("/") + "/")
            return reference if same_origin and inside and "@" not in target.netloc else None
        if not target.scheme and reference.startswith("/") and self._allowed_file(reference) is None:
            return self.label_studio_url + reference
        return None

    def _allowed_file(self, reference: str) -> Path | None:
        """The resolved path of a file reference inside a files root, else None (nothing on disk is read)."""
        if reference.startswith("file://"):
            reference = urllib.parse.unquote(urllib.parse.urlsplit(reference).path)
        elif urllib.parse.urlsplit(reference).scheme or not self.files_roots:
            return None
        path = Path(reference).resolve()
        return path if any(path.is_relative_to(root) for root in self.files_roots) else None

    def _fetch(self, url: str) -> bytes:
        request, limit = urllib.request.Request(url), self.limits.max_body_bytes
        try:
            data = self.auth.send(request, limit) if self.auth is not None else _send(request, limit)
        except urllib.error.HTTPError as error:
            raise DataError(f"cannot fetch task image {url} (HTTP {error.code} {error.reason})") from None
        except DataError as error:
            raise DataError(f"cannot fetch task image {url} ({error})") from None
        if len(data) > limit:
            raise DataError(f"task image {url}: {self.limits.body_error().replace('request body', 'image')}")
        return data


def _send(request: urllib.request.Request, limit: int) -> bytes:
    """The body of the answer to ``request`` (at most ``limit`` + 1 bytes, so a longer one shows); redirects refused.

    Raises urllib's HTTPError for an HTTP error status, DataError when no answer came.
    """
    try:
        with _OPENER.open(request, timeout=FETCH_TIMEOUT_S) as response:
            return response.read(limit + 1)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as error:
        raise DataError(str(getattr(error, "reason", error))) from None


def _data_uri_bytes(uri: str) -> bytes:
    """The bytes of a ``data:`` URI (RFC 2397): base64 if marked ``;base64``, else percent-encoded."""
    header, separator, payload = uri.partition(",")
    if not separator:
        raise DataError("task image data: URI has no ',' before its data")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except binascii.Error as error:
        raise DataError(f"task image data: URI: bad base64 ({error})") from None
