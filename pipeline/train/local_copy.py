"""A node-local copy of the base dataset (``runs.local_copy_dir``), so that training reads its
samples from local disk instead of the shared volume the tokenize stage wrote.

``copy_dataset(prefix, local_dir)`` copies ``<prefix>.bin`` and ``<prefix>.idx`` into
``<local_dir>/<key>/`` (``key``: a hash of the source prefix, so datasets of several experiments
sit side by side) once per node, whoever asks first: every rank on the node calls it and the others
wait on a file lock. Each file is copied to a temporary name while its bytes are hashed, read back
and checked against that hash and the source's size, then renamed into place; a record
(``copied.json``) of each source's size and mtime and each copy's size, mtime and SHA-256 is
written last. A later call reuses the copy while the record matches both the sources and the
copies on disk (size and mtime: a source rewritten by a re-run tokenize stage, or a copy touched
since, is copied again); it does not hash them again.

Only the bytes move: megatron's index cache stays keyed by the source prefix
(``pipeline.data.SampleStream``), so the copy reads exactly the samples the source does.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass

from taggant.pipeline.errors import DataError

SUFFIXES = (".bin", ".idx")
RECORD = "copied.json"
LOCK = ".lock"
CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class LocalCopy:
    """A dataset's node-local copy: its Megatron ``prefix`` and whether this call ``copied`` it
    (False: an earlier call on this node did)."""

    prefix: str
    copied: bool


def copy_dataset(prefix: str, local_dir: str) -> LocalCopy:
    """The Megatron dataset ``prefix`` (``.bin`` and ``.idx``, a local or mounted path) copied
    into ``local_dir`` on this node; copied only when no valid copy is there.

    Raises:
        DataError: ``local_dir`` cannot be created or lacks the space (naming
            ``runs.local_copy_dir`` and the fix), or a copy read back differs from its source.
    """
    source = os.path.abspath(prefix)
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = os.path.join(local_dir, key)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"runs.local_copy_dir: cannot create {folder} ({e}); use a writable node-local "
            "folder or leave local_copy_dir unset"
        ) from e
    local = os.path.join(folder, os.path.basename(source))
    with open(os.path.join(folder, LOCK), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on an error
        if _valid(folder, source, local):
            return LocalCopy(local, copied=False)
        _check_space(folder, source, local)
        copies = {suffix: _copy_verified(source + suffix, local + suffix) for suffix in SUFFIXES}
        record = {"source": source, "sources": _stats(source), "copies": copies}
        tmp = os.path.join(folder, RECORD + ".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(folder, RECORD))
    return LocalCopy(local, copied=True)


def _stats(prefix: str) -> dict[str, dict[str, int]]:
    out = {}
    for suffix in SUFFIXES:
        st = os.stat(prefix + suffix)
        out[suffix] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def _valid(folder: str, source: str, local: str) -> bool:
    """Whether the record matches the sources as they are now and the copies as they are."""
    try:
        with open(os.path.join(folder, RECORD)) as f:
            record = json.load(f)
        now = _stats(local)
    except (OSError, ValueError):
        return False
    copies = {s: {k: c[k] for k in ("size", "mtime_ns")} for s, c in record["copies"].items()}
    return record["source"] == source and record["sources"] == _stats(source) and copies == now


def _check_space(folder: str, source: str, local: str) -> None:
    needed = sum(os.path.getsize(source + s) for s in SUFFIXES)
    # An old copy in place is replaced, so its bytes count as free.
    reusable = sum(os.path.getsize(local + s) for s in SUFFIXES if os.path.exists(local + s))
    free = shutil.disk_usage(folder).free + reusable
    if needed > free:
        raise DataError(
            f"runs.local_copy_dir: the base dataset {source} needs {needed} bytes but {folder} "
            f"has {free} free; free space there, point local_copy_dir at a larger disk, or "
            "leave it unset to read from the shared volume"
        )


def _copy_verified(src: str, dst: str) -> dict[str, int | str]:
    """Copy ``src`` to ``dst`` through a temporary name, checked by size and by SHA-256 read back;
    returns the copy's size, mtime and hash."""
    tmp = f"{dst}.tmp-{os.getpid()}"
    written = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK_BYTES):
                written.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        size = os.path.getsize(tmp)
        back = _sha256(tmp)
        if size != os.path.getsize(src) or back != written.hexdigest():
            raise DataError(
                f"the copy of {src} in {tmp} reads back {size} bytes with SHA-256 {back[:12]}, "
                f"not the source's {os.path.getsize(src)} bytes and {written.hexdigest()[:12]}; "
                "check the local disk, or leave runs.local_copy_dir unset"
            )
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    st = os.stat(dst)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": back}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()
