"""Finding data files and reading their formats, with errors that say what, where and how to fix.

The data folder is, in order: the ``data_dir=`` argument, ``$FASTDIS_DATA``,
``$DISENTANGLEMENT_LIB_DATA`` (dlib's variable, so an existing dlib data folder just works), and
the current directory (dlib's fallback). Files sit in dlib's sub-folders under it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

ENV_VARS = ("FASTDIS_DATA", "DISENTANGLEMENT_LIB_DATA")


def resolve_data_dir(data_dir=None) -> tuple[Path, str]:
    """The data folder and where it came from (for messages)."""
    if data_dir is not None:
        return Path(data_dir), "the data_dir argument"
    for var in ENV_VARS:
        if os.environ.get(var):
            return Path(os.environ[var]), f"${var}"
    return Path("."), f"the current directory (neither ${ENV_VARS[0]} nor ${ENV_VARS[1]} is set)"


#: Bytes read from each end of a data file to identify it (with its size).
_IDENTITY_BYTES = 1 << 16


def same_data_folder(first, second, dataset: str) -> bool:
    """Whether data folders ``first`` and ``second`` (``data_dir`` values; None: the default
    of :func:`resolve_data_dir`) hold the same data for ``dataset``, however spelled.

    Equal when they resolve to the same folder (absolute or relative paths, another working
    directory, a symlink, ``$FASTDIS_DATA``), or when the data set's files in both have the
    same sizes and the same first and last 64 KiB (a copy elsewhere). A data set unknown to
    the registry is compared by folder only.
    """
    folders = [os.path.realpath(resolve_data_dir(folder)[0]) for folder in (first, second)]
    if folders[0] == folders[1]:
        return True
    from .registry import DATASETS

    if dataset not in DATASETS:
        return False
    identities = [data_identity(Path(folder), DATASETS[dataset].files) for folder in folders]
    return identities[0] is not None and identities[0] == identities[1]


def data_identity(folder: Path, relative_files) -> tuple | None:
    """(name, size, digest of both ends) of each file under ``folder`` (a relative path that
    is a folder counts each of its files); None if one is missing."""
    import hashlib

    identity = []
    for relative in relative_files:
        path = folder / relative
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                return None
            size = file.stat().st_size
            with open(file, "rb") as stream:
                head = stream.read(_IDENTITY_BYTES)
                stream.seek(max(0, size - _IDENTITY_BYTES))
                tail = stream.read(_IDENTITY_BYTES)
            identity.append((str(file.relative_to(folder)), size,
                             hashlib.blake2b(head + tail, digest_size=16).hexdigest()))
    return tuple(identity)


def require_file(path: Path, dataset: str, origin: str, fix: str) -> Path:
    """Return ``path`` if it is a file, else raise FileNotFoundError saying what and where."""
    if path.is_file():
        return path
    raise FileNotFoundError(
        f"{dataset}: data file {path.name!r} not found; looked for {path} "
        f"(data folder from {origin}). {fix}"
    )


def find_data_file(data_dir, relative: Path | str, dataset: str, fix: str) -> Path:
    """The path of ``relative`` in the data folder (:func:`resolve_data_dir`) if it is a file,
    else :func:`require_file`'s FileNotFoundError."""
    folder, origin = resolve_data_dir(data_dir)
    return require_file(folder / relative, dataset, origin, fix)


def bad_file(path: Path, expected: str, got: str) -> ValueError:
    return ValueError(f"{path}: expected {expected}; got {got}. Re-download or regenerate it.")


def _npy_header(stream, path: Path, member: str):
    """(shape, fortran_order, dtype) of an .npy stream positioned at its start."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(stream)
        return np.lib.format.read_array_header_2_0(stream)
    except (ValueError, OSError, SyntaxError) as exc:
        raise bad_file(path, f"a valid .npy member {member!r}",
                       f"an unreadable header ({exc})") from None


def load_npz_member(path: Path, member: str, *, mmap: bool = True) -> np.ndarray:
    """Array ``member`` of an .npz, memory-mapped when stored uncompressed, else read into RAM.

    ``np.load(mmap_mode=...)`` ignores the mode for .npz files, so an uncompressed member is
    mapped directly: its bytes sit contiguously after the zip local header and the .npy header.
    """
    with _open_npz(path) as archive:
        name = member + ".npy"
        if name not in archive.namelist():
            raise bad_file(path, f"an array named {member!r}", f"keys {_npz_keys(archive)}")
        info = archive.getinfo(name)
        with archive.open(name) as stream:
            shape, fortran_order, dtype = _npy_header(stream, path, member)
            header_size = stream.tell()
            if dtype.hasobject:
                raise bad_file(path, f"numeric array {member!r}", "an object array")
            if mmap and info.compress_type == zipfile.ZIP_STORED and not fortran_order:
                expected_bytes = int(np.prod(shape)) * dtype.itemsize
                if info.file_size - header_size < expected_bytes:
                    raise bad_file(path, f"{expected_bytes} bytes of {member!r} {shape}",
                                   f"{info.file_size - header_size} (truncated)")
                return np.memmap(path, dtype=dtype, mode="r", shape=shape,
                                 offset=_member_data_offset(path, info) + header_size)
        try:
            with np.load(path, allow_pickle=False) as data:
                return data[member]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise bad_file(path, f"a complete array {member!r}", f"a read error ({exc})") from None


#: What a pickled member of a data file may reference: numpy's array and scalar
#: reconstruction, and plain containers. Anything else (``os.system`` in a crafted file's
#: ``__reduce__``) is refused before it is called.
_SAFE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("collections", "OrderedDict"), ("_codecs", "encode"),
}
#: Module names of older pickles (numpy 1, Python 2) and what they are now.
_RENAMED_MODULES = {"numpy.core.multiarray": "numpy._core.multiarray",
                    "numpy.core.numeric": "numpy._core.numeric", "__builtin__": "builtins",
                    "copy_reg": "copyreg"}


class UnsafePickleError(ValueError):
    """A pickled member of a data file references something other than plain data."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings, numbers and numpy arrays, and nothing else."""

    def find_class(self, module, name):
        module = _RENAMED_MODULES.get(module, module)
        if (module, name) not in _SAFE_GLOBALS:
            raise UnsafePickleError(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError(f"a persistent reference {pid!r}")


def load_npz_object(path: Path, member: str):
    """A pickled object member (dSprites' ``metadata`` dict), read by an unpickler that admits
    only plain data (containers, strings, numbers, numpy arrays): a data file runs no code.
    py2 pickles need latin1. A member that is a plain array is returned as such."""
    with _open_npz(path) as archive:
        if member + ".npy" not in archive.namelist():
            raise bad_file(path, f"an entry named {member!r}", f"keys {_npz_keys(archive)}")
        try:
            with archive.open(member + ".npy") as stream:
                _, _, dtype = _npy_header(stream, path, member)
                if dtype.hasobject:
                    value = _unpickle_plain_data(stream, path, member)
                    return value[()] if isinstance(value, np.ndarray) else value
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise bad_file(path, f"a readable entry {member!r}", f"a read error ({exc})") from None
    return load_npz_member(path, member, mmap=False)[()]


def _unpickle_plain_data(stream, path: Path, member: str):
    try:
        return _PlainDataUnpickler(stream, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise bad_file(path, f"plain data in the pickled entry {member!r}",
                       f"a reference to {exc} (refused: a data file must not run code)"
                       ) from None
    except (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError,
            IndexError, TypeError, AttributeError) as exc:  # what a garbled pickle raises
        raise bad_file(path, f"a readable entry {member!r}",
                       f"a read error ({type(exc).__name__}: {exc})") from None


def _open_npz(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise bad_file(path, "an .npz (zip) archive", f"an unreadable file ({exc})") from None


def _npz_keys(archive: zipfile.ZipFile) -> list[str]:
    return [n[:-4] if n.endswith(".npy") else n for n in archive.namelist()]


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored member's data: local header (30 bytes) + name + extra field."""
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
    name_length = int.from_bytes(local[26:28], "little")
    extra_length = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


def write_npz_stored(path: Path, arrays: dict, chunks: dict | None = None) -> None:
    """Write an uncompressed .npz; ``chunks[name]`` = (shape, dtype, iterator of blocks) streams
    a large array block by block instead of holding it in memory (any dlib or numpy reader
    opens the result like ``np.savez``'s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, (shape, dtype, blocks) in (chunks or {}).items():
            with archive.open(name + ".npy", "w", force_zip64=True) as stream:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                          "fortran_order": False, "shape": tuple(shape)}
                np.lib.format.write_array_header_2_0(stream, header)
                for block in blocks:
                    stream.write(np.ascontiguousarray(block, dtype=dtype).data)
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=True)
    tmp.replace(path)


# NYU's "binary matrix" format (SmallNORB): int32 magic, int32 ndim, max(3, ndim) int32 dims, data.
# dlib maps the byte magic to int8; the pixels are unsigned, so fastdis reads uint8.
_BINARY_MATRIX_DTYPES = {
    0x1E3D4C55: np.uint8,
    0x1E3D4C54: np.int32,
    0x1E3D4C51: np.float32,
    0x1E3D4C53: np.float64,
}


def read_binary_matrix(path: Path) -> np.ndarray:
    """Read a SmallNORB ``.mat`` binary matrix (memory-mapped), checking header and length."""
    size = path.stat().st_size
    if size < 20:
        raise bad_file(path, "a SmallNORB binary-matrix header (>= 20 bytes)", f"{size} bytes")
    head = np.fromfile(path, dtype="<i4", count=2)
    magic, ndim = int(head[0]) & 0xFFFFFFFF, int(head[1])
    if magic not in _BINARY_MATRIX_DTYPES or not 1 <= ndim <= 8:
        raise bad_file(path, "a SmallNORB binary matrix (magic 0x1E3D4C5x, 1-8 dims)",
                       f"magic {magic:#x}, {ndim} dims")
    stored_dims = max(3, ndim)
    dims = tuple(int(d) for d in np.fromfile(path, dtype="<i4", count=2 + stored_dims)[2:2 + ndim])
    dtype = np.dtype(_BINARY_MATRIX_DTYPES[magic]).newbyteorder("<")
    offset = 8 + 4 * stored_dims
    expected = int(np.prod(dims)) * dtype.itemsize
    if size - offset != expected:
        raise bad_file(path, f"{expected} data bytes for dims {dims}",
                       f"{size - offset} (truncated or corrupt)")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)
