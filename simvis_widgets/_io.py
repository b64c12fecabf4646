"""Files: one atomic-write helper and one content hash, shared by figures, HTML export and galleries."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


def default_mode(path: Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would give: the existing file's, else 0666 less the umask
    (``mkstemp`` alone would leave 0600)."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, text: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it is flushed, fsynced, given the permissions
    a plain write would give and renamed over ``path``. On any error (or Ctrl-C) the temporary file is removed and
    a previous ``path`` is left untouched, so readers see either the old file or the whole new one.

    Raises ``FileNotFoundError`` naming the folder when it does not exist, ``IsADirectoryError`` when ``path`` is
    a folder."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write '{path}': it is a folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w" if text else "wb", encoding="utf-8" if text else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def digest(*parts: bytes | memoryview) -> str:
    """SHA-256 hex digest of ``parts`` (each length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ); a
    part may be any C-contiguous buffer, hashed as its bytes without a copy."""
    h = hashlib.sha256()
    for part in parts:
        data = memoryview(part).cast("B")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """A tensor's dtype, shape and values as bytes (for digests); the same values on any device give the same bytes."""
    data = t.detach().cpu().contiguous()
    return f"{data.dtype}{tuple(data.shape)}".encode() + data.reshape(-1).view(torch.uint8).numpy().tobytes()


def image_hash(image: np.ndarray) -> str:
    """The content hash of a loaded image (its shape, dtype and pixels): equal hashes, equal images."""
    data = np.ascontiguousarray(image)
    return digest(f"{data.shape}|{data.dtype}".encode(), data.data)
