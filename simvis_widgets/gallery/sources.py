"""What a gallery can be built from: a folder, a list of images or paths, or a torch Dataset."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import GalleryError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, by suffix), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"'{folder}' is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _dataset_items(dataset: torch.utils.data.Dataset) -> tuple[list[Any], list[Any] | None]:
    images, labels = [], []
    for k in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[k]
        if isinstance(item, (tuple, list)) and len(item) == 2:
            images.append(item[0])
            labels.append(item[1])
        else:
            images.append(item)
            labels.append(None)
    return images, (labels if any(v is not None for v in labels) else None)


def gallery_sources(source: Any, labels: Sequence[Any] | None) -> tuple[list[Any], list[Any] | None]:
    """The list of images (paths or in-memory) and their labels."""
    if isinstance(source, (str, os.PathLike)):
        if not Path(source).exists():
            raise GalleryError(f"'{source}' does not exist")
        items: list[Any] = list_images(source) if Path(source).is_dir() else [Path(source)]
    elif isinstance(source, torch.utils.data.Dataset) and not isinstance(source, (list, tuple)):
        items, found = _dataset_items(source)
        labels = labels if labels is not None else found
    elif isinstance(source, Iterable) and not isinstance(source, (np.ndarray, Tensor)):
        items = list(source)
    else:
        raise GalleryError(f"source must be a folder, a list of images or a torch Dataset; got {type(source).__name__}")
    if labels is not None and len(labels) != len(items):
        raise GalleryError(f"{len(labels)} labels for {len(items)} images")
    return items, (list(labels) if labels is not None else None)


def describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{source}'"
    return type(source).__name__


def is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))
