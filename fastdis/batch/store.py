"""The representation store: one Zarr v3 group holding the codes of many checkpoints.

Layout (``LocalStore``, Blosc zstd, chunked by checkpoint)::

    reps.zarr/
      zarr.json                      attributes["fastdis"]: store format, dataset name, the plan
      plan/factors                   (n_points, n_factors) int64, and plan/indices if any
      plan/groups/<metric>/<name>    BetaVAE / FactorVAE index arrays
      checkpoints/<key>/             one group per checkpoint; attributes: name, config,
        mean, sampled, ...           encoding_id, representations, n_codes, kl (per code),
        logvar                       checksums, complete; one array of (n_points, n_codes)
                                     per representation, one chunk each, and the posterior
                                     log-variances of the ``mean`` codes when known

A checkpoint group is written arrays first and ``complete: true`` last, so a crash mid-write
leaves an incomplete group that readers ignore and the next write replaces. ``encoding_id``
changes whenever a checkpoint is (re-)written, which is how scores know they are stale.
One process writes a store at a time; any number read it.

Integrity: Zarr reads a missing chunk file as its fill value, so a store copied incompletely
would hand out zeros as codes. Every array is therefore read verified: its chunks must all be
on disk, and its content must match the checksum recorded when it was written (``checksums``,
``{array name: digest}`` of every array of a checkpoint's group, read back after writing; the
plan's in the root's attributes). A damaged checkpoint raises :class:`StoreError` naming the
file and the problem, and only for that checkpoint; a checkpoint whose group metadata cannot
be read is listed in :meth:`RepresentationStore.damaged` and left out of the others. Stores
written before checksums existed are read with the chunk check only (their content cannot be
verified); re-encode a checkpoint to give it checksums.

:func:`write_codes` is the public entry for codes from any framework; ``fastdis encode``
(:func:`encode_checkpoints`) fills a store from training checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from .plan import EvaluationPlan

__all__ = ["StoreError", "RepresentationStore", "create_store", "open_store", "write_codes",
           "checkpoint_key"]

_FORMAT = "fastdis-representation-store"
_VERSION = 1
#: The file ``fastdis encode`` holds locked while it writes a store (one writer at a time).
WRITE_LOCK = ".write.lock"
#: Attributes every complete checkpoint group has.
_REQUIRED_ATTRIBUTES = ("name", "encoding_id", "representations")
#: Array of a checkpoint group holding the posterior log-variances of its ``mean`` codes;
#: not a representation, so the name is reserved.
LOGVAR = "logvar"
#: The representation whose codes are the posterior means that ``logvar`` belongs to.
POSTERIOR_MEANS = "mean"


class StoreError(ValueError):
    """A representation store is missing, corrupted, or does not fit the request."""


def checkpoint_key(name: str) -> str:
    """Zarr node name of checkpoint ``name``: percent-encoded, so any string is a valid name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a checkpoint name must be a non-empty string; got {name!r}.")
    return "c-" + quote(name, safe="")


def checkpoint_name_of_key(key: str) -> str:
    """The checkpoint name a Zarr node name stands for (:func:`checkpoint_key` reversed)."""
    return unquote(key[2:]) if key.startswith("c-") else key


def array_checksum(values: np.ndarray) -> str:
    """Digest of an array's dtype, shape and bytes (C order), as recorded in a store."""
    values = np.ascontiguousarray(values)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.data)
    return "blake2b:" + digest.hexdigest()


def read_verified(array, where: str, checksum: str | None) -> np.ndarray:
    """Every value of a Zarr ``array``, checked against what was written.

    Raises StoreError naming ``where`` (the array's path) if a chunk file is missing (Zarr
    would read it as the fill value), cannot be decoded, or the values do not match
    ``checksum`` (None: not recorded, only the chunks are checked).
    """
    try:
        missing = array.nchunks - array.nchunks_initialized
        values = array[...] if not missing else None
    except Exception as exc:  # a truncated or garbled chunk file
        raise StoreError(f"{where} cannot be read: {type(exc).__name__}: {exc}") from exc
    if missing:
        raise StoreError(f"{where}: {missing} of its {array.nchunks} chunk file(s) are missing "
                         "(an incomplete copy or a disk error); write it again.")
    if checksum is not None and array_checksum(values) != checksum:
        raise StoreError(f"{where}: its content does not match the checksum recorded when it "
                         "was written (a damaged chunk file); write it again.")
    return values


def _compressors():
    from zarr.codecs import BloscCodec

    # zstd at level 3 compresses float codes ~10-20 % with byte shuffling, at disk speed.
    return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]


class RepresentationStore:
    """An opened store: the plan, and codes and configs of its complete checkpoints.

    Open with :func:`open_store` or :func:`create_store`.
    """

    def __init__(self, path, root, plan: EvaluationPlan, dataset: str | None):
        self.path = Path(path)
        self._root = root
        self.plan = plan
        self.dataset = dataset

    def __repr__(self):
        return f"RepresentationStore({str(self.path)!r}, {len(self.names())} checkpoints)"

    def _checkpoints_group(self):
        return self._root["checkpoints"]

    def _keys(self) -> list[str]:
        """Node names under checkpoints/, from the directory: listing them through Zarr
        parses every group's metadata, and one unreadable group would hide all the others."""
        folder = self.path / "checkpoints"
        return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())

    def _scan(self) -> tuple[dict[str, dict], dict[str, str]]:
        """(``{name: attributes}`` of every complete checkpoint, ``{name: problem}`` of every
        checkpoint whose metadata cannot be read), in key order."""
        entries, damaged = {}, {}
        checkpoints = self._checkpoints_group()
        for key in self._keys():
            where = self.path / "checkpoints" / key / "zarr.json"
            try:
                attributes = dict(checkpoints[key].attrs)
            except Exception as exc:  # noqa: BLE001 - garbled JSON, a missing file, ...
                damaged[checkpoint_name_of_key(key)] = (
                    f"{where}: the checkpoint's metadata cannot be read "
                    f"({type(exc).__name__}: {exc}); encode it again.")
                continue
            if not attributes.get("complete"):
                continue
            lacking = [field for field in _REQUIRED_ATTRIBUTES if field not in attributes]
            if lacking:
                damaged[checkpoint_name_of_key(key)] = (
                    f"{where}: the checkpoint's metadata lacks {', '.join(lacking)}; encode it "
                    "again.")
                continue
            entries[attributes["name"]] = attributes
        return entries, damaged

    def _entries(self) -> dict[str, dict]:
        return self._scan()[0]

    def damaged(self) -> dict[str, str]:
        """``{name: problem}`` of the checkpoints whose metadata cannot be read (the problem
        names the file); they are left out of :meth:`names` and :meth:`checkpoints`."""
        return self._scan()[1]

    def unverified(self) -> list[str]:
        """What was written before checksums existed: "the evaluation plan" and/or checkpoint
        names. Their chunk files are checked on read, their content cannot be."""
        plan = [] if "checksums" in self._root.attrs["fastdis"] else ["the evaluation plan"]
        return plan + [name for name, entry in self._entries().items()
                       if "checksums" not in entry]

    def names(self) -> list[str]:
        """Names of the complete checkpoints."""
        return list(self._entries())

    def checkpoints(self) -> dict[str, dict]:
        """``{name: {"config", "encoding_id", "representations", "kl", ...}}``."""
        return self._entries()

    def __contains__(self, name) -> bool:
        return name in self._entries()

    def _group(self, name):
        key = checkpoint_key(name)
        try:
            group = self._checkpoints_group()[key]
        except KeyError:
            raise StoreError(f"{self.path}: no checkpoint named {name!r}.") from None
        except Exception as exc:  # noqa: BLE001 - unreadable metadata
            raise StoreError(f"{self.path / 'checkpoints' / key / 'zarr.json'}: the "
                             f"checkpoint's metadata cannot be read ({type(exc).__name__}: "
                             f"{exc}); encode it again.") from exc
        if not group.attrs.get("complete"):
            raise StoreError(f"{self.path}: checkpoint {name!r} was not completely written; "
                             "write it again.")
        return group

    def encoding_id(self, name: str) -> str:
        """Which encoding of checkpoint ``name`` the store holds now."""
        return self._group(name).attrs["encoding_id"]

    def config(self, name: str) -> dict:
        return dict(self._group(name).attrs["config"])

    def kl(self, name: str) -> np.ndarray | None:
        """Mean KL divergence of each code of checkpoint ``name`` to the prior, or None when
        it was written without."""
        kl = self._group(name).attrs.get("kl")
        return None if kl is None else np.asarray(kl, dtype=np.float64)

    def logvar(self, name: str) -> np.ndarray | None:
        """Posterior log-variances of the :data:`POSTERIOR_MEANS` codes, (n_points, n_codes),
        verified, or None when the checkpoint was written without."""
        if LOGVAR not in self._group(name).attrs.get("checksums", {}):
            return None
        return self.array(name, LOGVAR)

    def codes(self, name: str, representation: str = "mean") -> np.ndarray:
        """Codes of one checkpoint and representation, (n_points, n_codes), verified
        (module docstring: Integrity)."""
        available = list(self._group(name).attrs.get("representations", []))
        if representation not in available:
            raise StoreError(f"{self.path}: checkpoint {name!r} has no {representation!r} "
                             f"codes; it has {available}.")
        return self.array(name, representation)

    def array(self, name: str, array_name: str) -> np.ndarray:
        """Any array of checkpoint ``name``'s group, verified against its checksum.

        Raises
        ------
        StoreError
            If the checkpoint has no such array, or the array is damaged (the message names
            its path: a missing, truncated or garbled chunk file).
        """
        group = self._group(name)
        where = self.path / "checkpoints" / checkpoint_key(name) / array_name
        checksums = group.attrs.get("checksums") or {}
        try:
            array = group[array_name]
        except KeyError:
            if array_name in checksums:
                raise StoreError(f"{where}: the array was written but is missing now; write "
                                 "the checkpoint again.") from None
            available = list(group.attrs.get("representations", []))
            raise StoreError(f"{self.path}: checkpoint {name!r} has no {array_name!r} "
                             f"codes; it has {available}.") from None
        except Exception as exc:  # noqa: BLE001 - the array's own metadata is unreadable
            raise StoreError(f"{where}/zarr.json cannot be read ({type(exc).__name__}: "
                             f"{exc}); write the checkpoint again.") from exc
        return read_verified(array, str(where), checksums.get(array_name))


def _read_root(path, mode):
    import zarr
    from zarr.storage import LocalStore

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: not a representation store (no zarr.json); create one with "
                         "fastdis encode or fastdis.batch.write_codes(..., plan=...).")
    try:
        root = zarr.open_group(store=LocalStore(path, read_only=mode == "r"), mode=mode,
                               zarr_format=3)
        meta = dict(root.attrs).get("fastdis")
    except Exception as exc:
        raise StoreError(f"{path}: the store's metadata cannot be read ({exc}).") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise StoreError(f"{path}: a Zarr group, but not a fastdis representation store.")
    return root, meta


def open_store(path, *, mode: str = "r") -> RepresentationStore:
    """Open the store at ``path``; ``mode`` "r" (read-only) or "a" (append checkpoints).

    Raises
    ------
    StoreError
        If there is no store, or its metadata or plan arrays are missing or unreadable (the
        message names the path).
    """
    if mode not in ("r", "a"):
        raise ValueError(f"mode must be 'r' or 'a'; got {mode!r}.")
    root, meta = _read_root(path, mode)
    arrays = {}
    checksums = meta.get("checksums")
    try:
        plan_group = root["plan"]
        stored = dict(plan_group.arrays())
        groups = plan_group["groups"] if "groups" in plan_group else None
        for metric, metric_group in (groups.groups() if groups is not None else []):
            stored.update((f"groups/{metric}/{key}", array)
                          for key, array in metric_group.arrays())
        for array_path, array in stored.items():
            arrays[array_path] = read_verified(
                array, f"{path}/plan/{array_path}",
                None if checksums is None else checksums.get(array_path))
        if checksums is not None and set(checksums) - set(stored):
            raise StoreError(f"{path}: the evaluation plan is missing or corrupted (arrays "
                             f"{sorted(set(checksums) - set(stored))} under {path}/plan are "
                             "gone).")
        plan = EvaluationPlan.from_metadata(meta["plan"], arrays)
        if "checkpoints" not in root:
            raise KeyError("checkpoints")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{path}: the evaluation plan or checkpoint list is missing or "
                         f"corrupted ({type(exc).__name__}: {exc}).") from exc
    return RepresentationStore(path, root, plan, meta.get("dataset"))


def create_store(path, plan: EvaluationPlan, *, dataset: str | None = None,
                 exist_ok: bool = False) -> RepresentationStore:
    """Create an empty store for ``plan`` at ``path`` (a directory).

    With ``exist_ok``, an existing store with the same plan is opened instead.

    Raises
    ------
    StoreError
        If something exists at ``path`` (and ``exist_ok`` is false, or its plan differs).
    """
    import zarr
    from zarr.storage import LocalStore

    path = Path(path)
    if path.exists():
        if exist_ok:
            store = open_store(path, mode="a")
            if not store.plan.same_as(plan):
                raise StoreError(f"{path}: the existing store was built with another "
                                 "evaluation plan (seed, metrics, sizes or data set differ).")
            return store
        raise StoreError(f"{path} already exists; open it with open_store, or remove it.")
    metadata, arrays = plan.to_metadata()
    root = zarr.open_group(store=LocalStore(path), mode="w-", zarr_format=3,
                           attributes={"fastdis": {"format": _FORMAT, "version": _VERSION,
                                                   "dataset": dataset, "plan": metadata}})
    checksums = {}
    for array_path, array in arrays.items():
        written = root.create_array(name=f"plan/{array_path}", data=np.ascontiguousarray(array),
                                    compressors=_compressors())
        checksums[array_path] = array_checksum(written[...])
    root.create_group("checkpoints")
    # Last: a crash before this line leaves a store without plan checksums, which
    # open_store still reads with the chunk check.
    root.attrs["fastdis"] = {**root.attrs["fastdis"], "checksums": checksums}
    return RepresentationStore(path, root, plan, dataset)


def open_or_create_store(store, plan: EvaluationPlan | None = None, *,
                         dataset: str | None = None) -> RepresentationStore:
    """``store`` (a path or an opened store) ready to append to: opened if it exists, else
    created with ``plan``; a given ``plan`` must equal the store's.

    Raises
    ------
    StoreError
        If the store does not exist and ``plan`` is None, or ``plan`` differs from its plan.
    """
    if not isinstance(store, RepresentationStore):
        if Path(store).exists():
            store = open_store(store, mode="a")
        elif plan is None:
            raise StoreError(f"{store} does not exist: pass plan=... to create it.")
        else:
            store = create_store(store, plan, dataset=dataset)
    if plan is not None and plan is not store.plan and not store.plan.same_as(plan):
        raise StoreError(f"{store.path}: plan differs from the store's evaluation plan; codes "
                         "must be computed on the store's points (open_store(path).plan).")
    return store


def _as_codes(label, codes, n_points):
    """``codes`` (named ``label`` in errors) as a contiguous float32 or float64 array."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != n_points:
        raise ValueError(
            f"{label} must have shape (n_points, n_codes) = ({n_points}, n_codes), one row per "
            f"plan point (plan.factors); got {codes.shape}."
        )
    if not np.issubdtype(codes.dtype, np.number) or np.iscomplexobj(codes):
        raise ValueError(f"{label} must hold real numbers; got dtype {codes.dtype}.")
    # float32 stays float32 (as in the metrics); NaN is stored and reported when scoring.
    return np.ascontiguousarray(codes if codes.dtype == np.float32 else codes.astype(np.float64))


def write_codes(
    store,
    name: str,
    codes_by_representation: Mapping[str, np.ndarray],
    config: Mapping | None = None,
    *,
    plan: EvaluationPlan | None = None,
    kl=None,
    logvar=None,
    replace: bool = False,
    dataset: str | None = None,
) -> bool:
    """Add one checkpoint's codes to a representation store (created on first use).

    Use this when the codes come from your own framework: encode the observations of
    ``plan.factors`` (in that order; ``plan.indices`` are their flat dataset indices when the
    data set has them) and pass the arrays here; then ``fastdis score`` the store.

    Parameters
    ----------
    store : str, PathLike or RepresentationStore
        The store; created at that path with ``plan`` if it does not exist.
    name : str
        Checkpoint name, unique in the store (any string).
    codes_by_representation : mapping of str to array of shape (n_points, n_codes)
        e.g. ``{"mean": mean_codes, "sampled": sampled_codes}``, rows aligned with
        ``plan.factors``. float32 stays float32; NaN is allowed (scoring reports it).
    config : mapping, default=None
        JSON-serialisable description of the model (method, hyperparameters, seed, ...);
        it becomes the ``train_config.*`` columns of the scores.
    plan : EvaluationPlan, default=None
        Required to create the store; otherwise checked against the store's plan.
    kl : array of shape (n_codes,), default=None
        Mean KL divergence of each code's posterior to the prior over the plan's points; UDR
        needs it (its inactive codes), and records an error for checkpoints without it.
    logvar : array of shape (n_points, n_codes), default=None
        Posterior log-variances of the ``mean`` codes; Chen et al.'s MIG needs them (and
        records an error without them).
    replace : bool, default=False
        Overwrite an existing checkpoint of that name; otherwise it is kept and skipped.
    dataset : str, default=None
        Name of the data set, recorded when the store is created.

    Returns
    -------
    bool
        True if written, False if a complete checkpoint of that name was kept.

    Raises
    ------
    ValueError
        On malformed codes (shape not (n_points, n_codes), non-numeric), a ``kl`` or
        ``logvar`` that does not fit the codes, a config that is not JSON-serialisable, or a
        plan that differs from the store's (StoreError).

    Examples
    --------
    >>> from fastdis.batch import make_plan, write_codes
    >>> plan = make_plan(data, seed=0)
    >>> mean = my_encoder(data.sample_observations_from_factors(plan.factors, rs))
    >>> write_codes("reps.zarr", "beta4-seed0", {"mean": mean}, {"method": "beta_vae",
    ...             "beta": 4, "seed": 0}, plan=plan)
    """
    store = open_or_create_store(store, plan, dataset=dataset)
    key = checkpoint_key(name)
    if not isinstance(codes_by_representation, Mapping) or not codes_by_representation:
        raise ValueError("codes_by_representation must be a non-empty mapping such as "
                         "{'mean': codes}.")
    arrays = {}
    for representation, codes in codes_by_representation.items():
        if not isinstance(representation, str) or not representation or "/" in representation:
            raise ValueError(f"representation names must be non-empty strings without '/'; "
                             f"got {representation!r}.")
        if representation == LOGVAR:
            raise ValueError(f"{LOGVAR!r} is reserved for the posterior log-variances: pass "
                             "them as write_codes(..., logvar=...).")
        arrays[representation] = _as_codes(f"codes_by_representation[{representation!r}]",
                                           codes, store.plan.n_points)
    representations = list(arrays)
    if logvar is not None:
        arrays[LOGVAR] = _posterior_logvar(logvar, arrays)
    config = dict(config or {})
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config of {name!r} must be JSON-serialisable: {exc}") from None
    if kl is not None:
        kl = _per_code_kl(kl, arrays)

    checkpoints = store._checkpoints_group()
    if (store.path / "checkpoints" / key).is_dir():
        if not replace and _is_complete(checkpoints, key):
            return False
        _remove_checkpoint(store, key)
    group = checkpoints.create_group(key)
    for representation, codes in arrays.items():
        group.create_array(name=representation, data=codes, chunks=codes.shape,
                           compressors=_compressors())
    group.attrs.update({
        "name": name, "config": config, "encoding_id": uuid.uuid4().hex,
        "representations": representations,
        "n_codes": {r: int(arrays[r].shape[1]) for r in representations}, "kl": kl,
    })
    seal_checkpoint(group)
    return True


def _per_code_kl(kl, arrays) -> list[float]:
    """``kl`` as a list of one float per code; ValueError unless every array has that many
    codes."""
    try:
        kl = np.asarray(kl, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"kl must be an array of numbers (one per code); got {kl!r}.") from None
    widths = {r: int(c.shape[1]) for r, c in arrays.items()}
    if kl.ndim != 1 or any(width != kl.size for width in widths.values()):
        raise ValueError(f"kl must have shape (n_codes,), one value per code; got shape "
                         f"{kl.shape} for codes of widths {widths}.")
    return [float(v) for v in kl]  # NaN (a diverged model) is kept: UDR reports it


def _posterior_logvar(logvar, arrays) -> np.ndarray:
    """``logvar`` checked against the ``mean`` codes it belongs to."""
    if POSTERIOR_MEANS not in arrays:
        raise ValueError(f"logvar is the posterior log-variance of the {POSTERIOR_MEANS!r} "
                         f"codes: pass codes_by_representation[{POSTERIOR_MEANS!r}] too.")
    mean = arrays[POSTERIOR_MEANS]
    logvar = _as_codes("logvar", logvar, mean.shape[0])
    if logvar.shape != mean.shape:
        raise ValueError(f"logvar must have the shape of the {POSTERIOR_MEANS!r} codes "
                         f"{mean.shape}; got {logvar.shape}.")
    return logvar


def seal_checkpoint(group) -> None:
    """Record the checksum of every array of a checkpoint's group, read back from disk, and
    mark the group complete: the last write of a checkpoint."""
    checksums = {array_name: array_checksum(array[...]) for array_name, array in group.arrays()}
    group.attrs.update({"checksums": checksums, "complete": True})


def _is_complete(checkpoints, key: str) -> bool:
    """Whether group ``key`` is a complete checkpoint (False when its metadata is unreadable:
    then it is written again)."""
    try:
        return bool(checkpoints[key].attrs.get("complete"))
    except Exception:  # noqa: BLE001 - garbled or missing metadata
        return False


def _remove_checkpoint(store: RepresentationStore, key: str) -> None:
    """Delete a checkpoint's group, readable or damaged."""
    try:
        # Incomplete first: deleting is not atomic, and a crash halfway must not leave the
        # old group's "complete" metadata standing over missing arrays.
        store._checkpoints_group()[key].attrs["complete"] = False
    except Exception:  # noqa: BLE001 - unreadable metadata: nothing complete-looking to undo
        pass
    shutil.rmtree(store.path / "checkpoints" / key)


def store_size_bytes(path) -> int:
    """Bytes on disk under ``path``."""
    return sum(os.path.getsize(os.path.join(directory, f))
               for directory, _, files in os.walk(path) for f in files)
