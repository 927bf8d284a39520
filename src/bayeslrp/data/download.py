"""Resumable, checksum-verified downloads.

A download goes to ``<target>.part``. An existing ``.part`` is continued with an HTTP
``Range`` request (or restarted when the server ignores it), and is never trusted: only
after the caller's ``verify`` accepts the complete file is it handed on. If a resumed
file fails verification it is deleted and downloaded once more from scratch.
"""
from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from bayeslrp.errors import BayesLRPError

_CHUNK = 1 << 20
_USER_AGENT = "bayeslrp-data/1"


class _Incomplete(Exception):
    """The connection ended before Content-Length bytes arrived; the .part is kept for resuming."""


def _transfer(url: str, part: Path, timeout: float) -> bool:
    """Bring ``part`` up to date with ``url``. Returns True when it continued an existing part."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only, checked)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return True  # the part already holds the whole file (or is longer): let verify decide
        raise
    with response:
        resumed = False
        expected = response.headers.get("Content-Length")
        if have and response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            resumed = bool(match and int(match.group(1)) == have)
        mode = "ab" if resumed else "wb"
        received = 0
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, mode) as handle:
            for block in iter(lambda: response.read(_CHUNK), b""):
                handle.write(block)
                received += len(block)
        if expected is not None and received != int(expected):
            raise _Incomplete(f"got {received} of {expected} bytes")
        return resumed


def download_verified(urls: list[str], part: Path, verify: Callable[[Path], None], *,
                      what: str, fix: str = "", timeout: float = 60.0) -> Path:
    """Download the first URL that yields a file accepted by ``verify``.

    Parameters
    ----------
    urls
        Candidate locations of the same file, tried in order (http or https).
    part
        Staging file; an existing one is resumed. On success it holds the verified file.
    verify
        Called with ``part`` once complete; must raise ``BayesLRPError`` to reject it.
    what
        Name of the file for messages.
    fix
        What the user can do instead, appended to the error (optional).
    timeout
        Socket timeout in seconds.

    Returns
    -------
    Path
        ``part``, now complete and verified. The caller moves or converts it and deletes it.

    Raises
    ------
    BayesLRPError
        No URL gave a verified file (network errors, or checksum mismatches).
    """
    problems: list[str] = []
    for url in urls:
        if not url.startswith(("http://", "https://")):
            problems.append(f"{url}: not an http(s) URL")
            continue
        for attempt in range(2):
            try:
                resumed = _transfer(url, part, timeout)
            except _Incomplete as exc:
                problems.append(f"{url}: incomplete ({exc}); the partial file is kept and resumed next time")
                break
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
                break
            try:
                verify(part)
                return part
            except BayesLRPError as exc:
                part.unlink(missing_ok=True)
                if resumed and attempt == 0:
                    continue  # the kept prefix may have been bad: restart from scratch once
                problems.append(f"{url}: {exc}")
                break
    message = f"could not download {what} ({'; '.join(problems)})"
    raise BayesLRPError(f"{message}: {fix}" if fix else message)
