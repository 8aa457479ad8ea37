"""Downloads checked against the official MD5 before use, and tar extraction that stays inside
its folder.

A download goes to a temporary name and only takes the file's real name once its MD5 matches;
a file with the wrong MD5 is kept aside as ``<name>.bad`` and never extracted. Any URL scheme
:func:`urllib.request.urlopen` reads works, ``file://`` included (the tests use it).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from reslab.data.base import progress
from reslab.errors import ReslabError
from reslab.io import atomic_write

URL_SCHEMES = ("https", "http", "ftp", "file")  # what urllib.request opens

CHUNK = 1 << 20
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)  # a damaged or cut archive


@dataclass(frozen=True)
class Resource:
    """One official file.

    Attributes:
        filename: Its name, on disk and at the end of each mirror's URL.
        md5: Its official MD5 (hex).
        mirrors: Base URLs; the file's URL is ``mirror + filename``.
    """

    filename: str
    md5: str
    mirrors: tuple[str, ...]


def check_mirrors(mirrors: tuple[str, ...] | None) -> None:
    """Refuse a mirror that urllib cannot open (e.g. one without ``https://``, a port that is
    not a number, no host) in one line.

    Args:
        mirrors: Base URLs given by the user (None: the official ones, not checked).

    Raises:
        ReslabError: The first mirror that is not a valid URL.
    """
    for base in mirrors or ():
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in URL_SCHEMES:
            raise ReslabError(f"mirror {base!r} is not a URL: it must start with "
                              + ", ".join(f"{scheme}://" for scheme in URL_SCHEMES))
        try:
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError as exc:
            raise ReslabError(f"mirror {base!r} is not a valid URL ({exc})") from None
        if parts.scheme != "file" and not parts.hostname:
            raise ReslabError(f"mirror {base!r} is not a valid URL: it names no host")


def md5_file(path: str | os.PathLike, *, show_progress: bool = False) -> str:
    """The MD5 (hex) of a file's bytes.

    Args:
        path: The file, read in chunks.
        show_progress: A progress bar in bytes (on a terminal), for large archives.

    Returns:
        The lowercase hex digest.
    """
    with open(path, "rb") as handle:
        if not show_progress:
            return md5_stream(handle)
        size = os.fstat(handle.fileno()).st_size
        with progress(total=size, desc=f"MD5 {Path(path).name}", unit="B",
                      unit_scale=True) as bar:  # fmt: skip
            return md5_stream(handle, bar=bar)


def md5_stream(handle: BinaryIO, *, bar: tqdm | None = None) -> str:
    """The MD5 (hex) of the bytes left in an open binary file, read in chunks.

    Args:
        handle: The file object.
        bar: A progress bar to advance by the bytes read.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return digest.hexdigest()


def _download(url: str, dest: Path) -> str:
    """Copy ``url`` to ``dest`` (atomically) and return the MD5 of the bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=60) as response:
        length = response.headers.get("Content-Length")
        with atomic_write(dest, "wb") as out, progress(
            total=length and int(length), desc=dest.name, unit="B", unit_scale=True
        ) as bar:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def fetch(resource: Resource, folder: Path, *, mirrors: tuple[str, ...] | None = None) -> Path:
    """Download ``resource`` into ``folder`` unless a copy with the official MD5 is there.

    Mirrors are tried in order. A download whose MD5 differs is renamed ``<name>.bad`` (kept for
    inspection, never used) and the next mirror is tried.

    Args:
        resource: The file and its official MD5.
        folder: Where it goes (created if missing).
        mirrors: Base URLs to use instead of ``resource.mirrors``.

    Returns:
        The path of the checked file.

    Raises:
        ReslabError: No mirror gave a file with the official MD5.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / resource.filename
    if dest.is_file() and md5_file(dest) == resource.md5:
        return dest
    partial = folder / f"{resource.filename}.download"
    problems = []
    for base in mirrors or resource.mirrors:
        url = base if base.endswith("/") else base + "/"
        url += resource.filename
        try:
            got = _download(url, partial)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            problems.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        if got == resource.md5:
            os.replace(partial, dest)
            return dest
        bad = folder / f"{resource.filename}.bad"
        os.replace(partial, bad)
        problems.append(
            f"{url}: MD5 {got} is not the official {resource.md5} (kept aside as {bad}, not used)"
        )
    raise ReslabError(f"could not download {resource.filename}: " + "; ".join(problems))


def _member_path(archive: Path, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's relative path, or :class:`ReslabError` if it could leave the folder."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith("\\"):
        raise ReslabError(
            f"{archive}: member {member.name!r} points outside the target folder; not extracted"
        )
    if not (member.isfile() or member.isdir()):
        raise ReslabError(
            f"{archive}: member {member.name!r} is a link or special file; not extracted"
        )
    return path


def copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Write a regular-file member of an open archive to ``target``, in chunks.

    Args:
        tar: The archive (random access or a stream positioned at ``member``).
        member: A regular file of it.
        target: The file to write.
    """
    with tar.extractfile(member) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a tar archive (any compression tarfile reads) into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links and special files are refused. The members go to a temporary folder inside ``dest``
    and their top-level entries are then renamed into place, so an interrupted extraction leaves
    nothing that looks complete.

    Args:
        archive: The archive.
        dest: The folder to extract into (must exist).

    Returns:
        The top-level paths created in ``dest``.

    Raises:
        ReslabError: A member is unsafe, the archive is damaged, or a top-level entry exists.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [(m, _member_path(archive, m)) for m in tar.getmembers()]
            members = [(m, path) for m, path in members if path.parts]
            tops = sorted({path.parts[0] for _, path in members})
            for top in tops:
                if (dest / top).exists():
                    raise ReslabError(
                        f"{dest / top} already exists; remove it to extract {archive.name} again"
                    )
            staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{archive.name}."))
            try:
                for member, path in members:
                    target = staging.joinpath(*path.parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    copy_member(tar, member, target)
                for top in tops:
                    os.replace(staging / top, dest / top)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except ARCHIVE_ERRORS as exc:
        raise ReslabError(f"{archive}: cannot extract: {exc}") from exc
    return [dest / top for top in tops]
