"""The Ray engine: embed a gallery's images on a Ray cluster (``Gallery.build(..., engine="ray")``).

Workers write the rows as uncommitted Lance fragments next to the dataset; the driver commits them as their
results stream back, so the gallery grows commit by commit exactly as with the local engine (:func:`.engines.run_local`)
and a killed build keeps every commit it made.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import pickle
import re
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GalleryError, SimvisError
from ..session import RUNTIME_OPTIONS, ModelSession
from .engines import BuildItem, CommitPolicy, Loaded, embed_loaded, load_item, unreadable_row
from .store import GalleryWriter, fragments_from_json, write_fragments

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
MISSING_RAY = "engine='ray' needs Ray: pip install 'simvis-widgets[distributed]'"


def run_ray(
    items: Sequence[BuildItem],
    session: ModelSession,
    writer: GalleryWriter,
    policy: CommitPolicy,
    *,
    store_features: bool,
    batch_size: int,
    progress: bool,
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    max_retries: int = 3,
) -> list[Loaded]:
    """Embed ``items`` on a Ray cluster and commit their rows to ``writer``'s dataset; returns the items that
    could not be read (as :func:`.engines.run_local` does). ``Gallery.build(..., engine="ray", ray_options={...})``
    calls it; ``ray_options`` are the keyword arguments from ``address`` on.

    What it does. The items are cut, in order, into batches of ``batch_size`` (the local engine's batches) and
    handed to Ray Data, which streams them through a pool of ``actors`` actors. Each actor holds one copy of the
    session (shipped once through Ray's object store, without its feature cache; on a GPU it moves its copy to
    its GPU). For each batch an actor decodes, hashes and resizes the images, runs them through the network in
    one pass per input size, records each unreadable file as an error row (so a rebuild skips it while its
    bytes are unchanged), and writes all the batch's rows as uncommitted Lance fragments into the gallery's
    dataset folder. It sends back only the fragments' metadata and the positions of the unreadable images.
    The driver commits the fragments it has received every ``policy.rows`` images or ``policy.seconds``
    seconds (checked as each batch arrives), and once at the end. Batches arrive in item order, so the rows
    are committed in item order and a Ray build lists the images in the same order as a local build. The
    stored rows are the same bytes a local build writes (same functions), up to the floating-point
    differences of another device or thread count.

    Failures. A worker process that dies (killed, out of memory, a lost node) is restarted up to
    ``max_retries`` times and its batch retried up to ``max_retries`` times. A batch that still fails, or an
    error raised by the network itself (not retried: it would fail again), stops the build with a
    :class:`~simvis_widgets.errors.GalleryError` naming the batch (its item positions and first source); the
    batches received before it are committed first, so building again into the same path resumes from there.
    Fragments a dead worker had written but never reported are never committed (they stay as unreferenced
    files in the dataset's ``data`` folder and are never read).

    Where it runs. If Ray is not yet initialised in this process, ``ray.init(address=address)`` is called:
    ``address=None`` starts a local Ray on this machine (or joins the cluster given by ``RAY_ADDRESS``);
    ``"auto"`` joins the cluster this machine is a node of; ``"ray://head:10001"`` connects through Ray
    Client. A Ray already initialised by the caller is used as it is (``address`` is then ignored) and never
    shut down; a Ray started here is left running for later builds (``ray.shutdown()`` stops it). Every
    worker must import the same version of simvis-widgets (install it on every node, or use a Ray
    ``runtime_env``), and must reach the gallery path: on a multi-node cluster it has to be a shared
    filesystem path mounted at the same place on every node, or an object-storage URI Lance supports
    (``s3://...``, ``gs://...``, ``az://...``) with credentials on every node. Images given as file paths are
    read by the workers, so those paths must be reachable from every node too; in-memory images travel
    through Ray's object store.

    Options. ``actors``: how many actors (default: one per GPU of the cluster divided by ``gpus_per_actor``,
    or one per CPU on a cluster without GPUs; never more than there are batches). ``gpus_per_actor``: the GPU
    share each actor reserves (default 1 when the cluster has GPUs, else 0; a fraction packs several actors on
    one GPU); an actor with a GPU share runs the network on its GPU. ``max_retries``: see Failures.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise GalleryError(MISSING_RAY) from None
    if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
        raise GalleryError(f"ray_options actors must be a positive integer, got {actors!r}")
    if gpus_per_actor is not None and (
        isinstance(gpus_per_actor, bool)
        or not isinstance(gpus_per_actor, (int, float))
        or not math.isfinite(gpus_per_actor)
        or gpus_per_actor < 0
    ):
        raise GalleryError(f"ray_options gpus_per_actor must be a number >= 0, got {gpus_per_actor!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise GalleryError(f"ray_options max_retries must be an integer >= 0, got {max_retries!r}")
    if not items:
        return []
    from tqdm.auto import tqdm

    if not ray.is_initialized():
        ray.init(address=address)
    shipped = _portable(session)
    dim = writer.existing.info.dim if writer.existing is not None else _embedding_width(shipped)
    table_schema = writer.schema_for(dim)

    batches = [list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]
    resources = ray.cluster_resources()
    gpus = float(gpus_per_actor) if gpus_per_actor is not None else (1.0 if resources.get("GPU", 0) > 0 else 0.0)
    if actors is None:
        per_gpu = int(resources.get("GPU", 0) // gpus) if gpus > 0 else 0
        actors = max(1, per_gpu if gpus > 0 else int(resources.get("CPU", 1)))
    actors = min(actors, len(batches))

    dataset = ray.data.from_items(
        [
            {"batch": k, "items": pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)}
            for k, batch in enumerate(batches)
        ],
        override_num_blocks=len(batches),  # one block per batch: each is retried, and reported, on its own
    )
    context = dataset.context  # this dataset's own copy of the DataContext: the caller's is left alone
    context.execution_options.preserve_order = True  # results in item order: the local engine's row order
    context.enable_progress_bars = False  # the build's own bar counts images
    context.print_on_execution_start = progress
    session_ref = ray.put(shipped)  # held until the build ends: a restarted actor fetches it again
    with warnings.catch_warnings():
        # Ray 2.60 deprecates passing actor options such as max_restarts without offering another way to bound
        # them (its default retries forever); they still work, and a bound is the documented contract here.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        embedded_ds = dataset.map_batches(
            EmbedActor,
            batch_size=1,
            batch_format="numpy",
            fn_constructor_kwargs={
                "session": [session_ref],  # in a list: the actor fetches it, Ray Data does not resolve it
                "uri": writer.uri,
                "schema": table_schema,
                "store_features": store_features,
                "cuda": gpus > 0,
                "total": len(batches),
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus if gpus > 0 else None,
            max_restarts=max_retries,
            max_task_retries=max_retries,
        )

    by_position = {item.position: item for item in items}
    failed: list[Loaded] = []
    pending: list[dict[str, Any]] = []
    pending_rows = 0
    since = time.monotonic()
    done = 0

    def commit() -> None:
        nonlocal pending, pending_rows, since
        if pending:
            writer.commit_fragments(fragments_from_json(pending), table_schema)
            policy.commits += 1
        pending, pending_rows, since = [], 0, time.monotonic()

    bar = tqdm(total=len(items), desc=f"gallery ({session.name}, ray)", unit="img", disable=not progress)
    try:
        results = iter(embedded_ds.iter_rows())
        while True:
            try:
                row = next(results)
            except StopIteration:
                break
            except Exception as err:
                raise _batch_error(err, batches, done) from err
            if str(row["error"]):
                _close(results)
                raise GalleryError(f"engine='ray': {row['error']}")
            done += 1
            pending.extend(json.loads(str(row["fragments"])))
            pending_rows += int(row["rows"])
            bad = [_failure(by_position, record) for record in json.loads(str(row["failed"]))]
            failed.extend(bad)
            if pending_rows >= policy.rows or time.monotonic() - since >= policy.seconds:
                commit()
            if bad:
                bar.total -= len(bad)  # the bar counts images embedded, not files tried
                bar.set_postfix(unreadable=len(failed))
            bar.update(int(row["embedded"]))
        commit()
    except BaseException:
        with contextlib.suppress(Exception):
            commit()  # keep what the batches that did arrive wrote: a rebuild resumes from there
        raise
    finally:
        bar.close()
    return failed


class EmbedActor:
    """One Ray Data actor: holds a session and turns batches of build items into committed-later fragments."""

    def __init__(self, session: list[Any], uri: str, schema: Any, store_features: bool, cuda: bool, total: int) -> None:
        import ray

        # Lance warns "No existing dataset ..., it will be created" for every batch written into a new gallery
        # (its fragments are committed by the driver): quiet unless the cluster's environment sets LANCE_LOG.
        os.environ.setdefault("LANCE_LOG", "error")
        held = session[0]
        loaded: ModelSession = ray.get(held) if isinstance(held, ray.ObjectRef) else held
        self.session = loaded.variant(device="cuda") if cuda else loaded
        self.resize = self.session.resizer()
        self.uri, self.schema, self.store_features, self.total = uri, schema, store_features, total

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list[Any]] = {
            "batch": [],
            "fragments": [],
            "failed": [],
            "rows": [],
            "embedded": [],
            "error": [],
        }
        for k, payload in zip(batch["batch"].tolist(), batch["items"]):
            items: list[BuildItem] = pickle.loads(payload)
            try:
                rows, bad = embed_loaded(
                    [load_item(item, self.resize) for item in items], self.session, self.store_features
                )
                embedded = len(rows)
                rows += [r for r in map(unreadable_row, bad) if r is not None]
                fragments = write_fragments(rows, self.uri, self.schema) if rows else []
            except Exception as err:  # deterministic (the network, the data, the storage): reported, not retried
                what = str(err) if isinstance(err, SimvisError) else f"{type(err).__name__}: {err}"
                fragments, bad, rows, embedded = [], [], [], 0
                out["error"].append(f"{describe_batch(k, self.total, items)} failed: {what}")
            else:
                out["error"].append("")
            out["batch"].append(k)
            out["fragments"].append(json.dumps(fragments))
            out["failed"].append(json.dumps([[b.item.position, b.file_hash, b.error or "unreadable"] for b in bad]))
            out["rows"].append(len(rows))
            out["embedded"].append(embedded)
        return {
            "batch": np.asarray(out["batch"], np.int64),
            "fragments": np.asarray(out["fragments"], dtype=object),
            "failed": np.asarray(out["failed"], dtype=object),
            "rows": np.asarray(out["rows"], np.int64),
            "embedded": np.asarray(out["embedded"], np.int64),
            "error": np.asarray(out["error"], dtype=object),
        }


def describe_batch(k: int, total: int, items: Sequence[BuildItem]) -> str:
    """``batch k/total (images p..q, first 'source')``: what an error names."""
    first = items[0].source if items[0].key is not None else f"in-memory image {items[0].position}"
    return f"batch {k + 1}/{total} (images {items[0].position}..{items[-1].position}, first {str(first)!r})"


def _batch_error(err: Exception, batches: list[list[BuildItem]], received: int) -> GalleryError:
    """What a Ray execution that failed (a worker that died more than ``max_retries`` times, an actor that could
    not start) becomes: results arrive in order, so the batch that never came back is the first not received."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    # A task error's text is a traceback (its last line says what was raised); other errors say it first.
    detail = (lines[-1] if type(err).__name__.startswith("RayTaskError") else lines[0]) if lines else ""
    k = min(received, len(batches) - 1)
    return GalleryError(
        f"engine='ray': {describe_batch(k, len(batches), batches[k])} did not complete "
        f"({type(err).__name__}: {detail}); the {received} batch(es) before it are committed: build again into "
        "the same path to resume"
    )


def _close(results: Any) -> None:
    """Stop a Ray Data iteration early (its executor shuts down)."""
    close = getattr(results, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _failure(by_position: dict[int, BuildItem], record: list[Any]) -> Loaded:
    position, file_hash, error = record
    return Loaded(by_position[int(position)], None, "", file_hash, str(error))


def _portable(session: ModelSession) -> ModelSession:
    """The session to ship to the actors: on the CPU (any worker can load it) and without the feature cache."""
    if session.device.type == "cpu":
        return session.variant(cache_size=0)  # shares the network: nothing is copied here
    model = copy.deepcopy(session.model).to("cpu")  # moving the caller's network would move its session
    runtime = {name: getattr(session, name) for name in RUNTIME_OPTIONS} | {"device": "cpu", "cache_size": 0}
    return ModelSession(model, options=session.options, **runtime)


def _embedding_width(session: ModelSession) -> int:
    """The width of the stored embeddings: one forward pass of a tiny black image."""
    feats = session.batch_features([session.prepare(np.zeros((16, 16, 3), np.uint8))])
    return int(session.embed_features(feats).shape[-1])
