"""Fetch dataset archives (Google Drive ids through gdown, or plain HTTP/HTTPS mirrors) and
extract the learn-to-cluster files they hold.

Guarantees, for a researcher on a flaky cluster link:

* a transfer goes to ``<dest>.part`` and is renamed to ``dest`` only once complete and, when
  an md5 is known, verified: a complete-looking file is never a partial one;
* an interrupted HTTP transfer is resumed from ``<dest>.part`` with a ``Range`` request (a
  server that ignores it is read again from the start); gdown resumes its own partial file;
* each source is tried ``retries`` times with a growing pause, then the next source;
* an md5 mismatch deletes the download and raises :class:`DownloadError` naming the file,
  the expected and the actual sum.

Extraction never writes outside the target folder: only the wanted files are taken out of
the archive, looked up by their learn-to-cluster path (``features/part1_test.bin``) after any
leading folders (``data/``), and each is written atomically and checked against its md5.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from facecluster.io import InputError

log = logging.getLogger(__name__)

__all__ = [
    "DownloadError",
    "ChecksumError",
    "md5sum",
    "fetch_http",
    "fetch_gdrive",
    "fetch",
    "extract",
]

CHUNK = 8 << 20  # bytes read per call: 8 MiB


class DownloadError(RuntimeError):
    """A download that could not be completed or verified."""


class ChecksumError(DownloadError):
    """A complete download whose md5 differs from the expected one (deleted)."""


def md5sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex md5 of a file, read in ``chunk``-byte pieces (constant memory)."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verify(part: Path, dest: Path, md5: str | None, source: str) -> None:
    """Check ``part`` against ``md5`` and move it to ``dest``; delete it on a mismatch."""
    if md5:
        actual = md5sum(part)
        if actual != md5.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{dest}: md5 mismatch for the download from {source}: expected {md5}, "
                f"got {actual}; the file was deleted (a corrupt mirror or a changed archive)"
            )
    os.replace(part, dest)


def fetch_http(
    url: str, dest: str | os.PathLike, *, md5: str | None = None, timeout: float = 60
) -> Path:
    """Download ``url`` to ``dest`` once, resuming ``<dest>.part`` if it exists.

    Raises
    ------
    DownloadError
        On an HTTP or network error, a transfer shorter than announced, or an md5 mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "facecluster"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if have and resp.status != 206:  # the server ignored Range: start again
                log.info("%s: server does not resume; restarting", url)
                have = 0
            elif have:
                log.info("%s: resuming at byte %d", url, have)
            length = resp.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as fh:
                shutil.copyfileobj(resp, fh, CHUNK)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # Range beyond the end: .part is already complete
            expected = have
        else:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc
    got = part.stat().st_size
    if expected is not None and got != expected:
        raise DownloadError(f"{url}: transfer ended at {got} of {expected} bytes")
    _verify(part, dest, md5, url)
    return dest


def fetch_gdrive(file_id: str, dest: str | os.PathLike, *, md5: str | None = None) -> Path:
    """Download the Google Drive file ``file_id`` to ``dest`` with gdown (which resumes)."""
    import gdown  # imported here: only the download rule needs it

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    source = f"Google Drive id {file_id}"
    try:
        out = gdown.download(id=file_id, output=str(part), quiet=True, resume=True)
    except Exception as exc:  # gdown raises several unrelated types (FileURLRetrievalError...)
        raise DownloadError(f"{source}: {exc}") from exc
    if out is None or not part.exists():
        raise DownloadError(f"{source}: gdown returned no file")
    _verify(part, dest, md5, source)
    return dest


def fetch(
    dest: str | os.PathLike,
    *,
    gdrive: str | None = None,
    urls: Sequence[str] = (),
    md5: str | None = None,
    retries: int = 3,
    pause: float = 5.0,
    mirrors: Sequence[str] = (),
    _sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download an archive to ``dest`` from the first source that works.

    Sources are tried in order: the Google Drive id, then each URL; each ``retries`` times
    with pauses of ``pause``, ``2 * pause``, ... seconds. An md5 mismatch moves on to the
    next source at once (retrying the same bytes would not help).

    Parameters
    ----------
    mirrors : web pages to fetch the archive from by hand (Baidu, OneDrive), named in the
        error message when every automatic source failed.
    """
    dest = Path(dest)
    sources: list[tuple[str, Callable[[], Path]]] = []
    if gdrive:
        sources.append((f"gdrive:{gdrive}", lambda: fetch_gdrive(gdrive, dest, md5=md5)))
    for url in urls:
        sources.append((url, lambda url=url: fetch_http(url, dest, md5=md5)))
    if not sources:
        raise DownloadError(f"{dest}: no download source (gdrive id or urls) configured")
    failures = []
    for name, get in sources:
        for attempt in range(1, retries + 1):
            try:
                return get()
            except DownloadError as exc:
                failures.append(f"{name} (attempt {attempt}): {exc}")
                log.warning("download failed: %s", failures[-1])
                if isinstance(exc, ChecksumError):
                    break
                if attempt < retries:
                    _sleep(pause * attempt)
    by_hand = ""
    if mirrors:
        by_hand = (
            "\nDownload it by hand from one of\n  "
            + "\n  ".join(mirrors)
            + f"\nand place it at {dest}; the workflow then verifies and uses it."
        )
    raise DownloadError(f"{dest}: every source failed:\n  " + "\n  ".join(failures) + by_hand)


def _member_for(name: str, wanted: Sequence[str]) -> str | None:
    """The wanted path that archive member ``name`` is (after any leading folders)."""
    name = name.lstrip("./")
    for w in wanted:
        if name == w or name.endswith("/" + w):
            return w
    return None


def extract(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    wanted: Mapping[str, str | None],
    *,
    optional: Sequence[str] = (),
) -> dict[str, Path]:
    """Extract the ``wanted`` files of a tar archive (any compression) into ``out_dir``.

    Parameters
    ----------
    wanted : learn-to-cluster path (``features/part1_test.bin``) -> md5 or ``None``.
    optional : wanted paths that may be absent from the archive (precomputed kNN files).

    Returns
    -------
    dict of wanted path -> extracted file, for the files found.

    Raises
    ------
    InputError
        If the archive is not a readable tar, a required file is missing, or a file's md5
        differs; nothing is left under ``out_dir`` for the failing file.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    found: dict[str, Path] = {}
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:
                target = _member_for(member.name, list(wanted)) if member.isfile() else None
                if target is None or target in found:
                    continue
                dest = out_dir / target
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                h = hashlib.md5()
                src = tar.extractfile(member)
                with open(part, "wb") as fh:
                    while block := src.read(CHUNK):
                        h.update(block)
                        fh.write(block)
                md5 = wanted[target]
                if md5 and h.hexdigest() != md5.lower():
                    part.unlink()
                    raise InputError(
                        f"{archive}: {member.name}: md5 mismatch: expected {md5}, "
                        f"got {h.hexdigest()} (corrupt or changed archive; delete it to "
                        "download again)"
                    )
                os.replace(part, dest)
                found[target] = dest
                log.info("extracted %s -> %s", member.name, dest)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise InputError(
            f"{archive}: not a readable tar archive ({exc}); delete it to download again"
        ) from exc
    missing = sorted(set(wanted) - set(found) - set(optional))
    if missing:
        raise InputError(f"{archive}: missing {', '.join(missing)}")
    return found
