"""The state store: where state that outlives a step, a server or a job is kept.

Locally it is a folder (`artifacts/` by default); on a cluster it is a prefix in the
S3-compatible object store the chart names (Kubeflow's MinIO by default). Pipeline steps,
the predictor and the CronJobs share nothing else but their artifacts and the other services
(MLflow, Redis), so everything one of them leaves for another goes through here: the Feast
offline data, the served requests' payload log, the drift decisions.

Every function takes a URI (a path or `s3://bucket/key`) and works the same on both. The
object store's endpoint comes from `object_store.endpoint_url`; its credentials from the
usual AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), which a cluster sets from
a Secret. A store that cannot be reached raises `StateStoreError` naming the endpoint.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from mlstack.config.serving import ObjectStoreSettings


class StateStoreError(RuntimeError):
    """The state store (object store or folder) could not be read or written."""


def is_remote(uri: str | Path) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def join(uri: str | Path, *parts: str) -> str:
    """`uri` with `parts` appended, for a path and an object store URI alike."""
    text = str(uri).rstrip("/")
    return "/".join([text, *(p.strip("/") for p in parts)])


@functools.cache
def _s3(endpoint_url: str | None) -> AbstractFileSystem:
    import s3fs

    client = {"endpoint_url": endpoint_url} if endpoint_url else {}
    # A fresh listing each time: another pod may have written since (no stale cache).
    return s3fs.S3FileSystem(client_kwargs=client, use_listings_cache=False)


def filesystem(uri: str | Path, store: ObjectStoreSettings) -> tuple[AbstractFileSystem, str]:
    """The filesystem that holds `uri`, and the path within it."""
    text = str(uri)
    if text.startswith(("s3://", "s3a://")):
        return _s3(store.endpoint_url), text.split("://", 1)[1]
    fs, path = fsspec.core.url_to_fs(text)
    return fs, path


def describe(uri: str | Path, store: ObjectStoreSettings) -> str:
    """The store behind `uri`, for error messages: the object store and its endpoint."""
    if str(uri).startswith(("s3://", "s3a://")):
        endpoint = store.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "AWS S3")
        return f"the object store at {endpoint} ({uri})"
    return str(uri)


def _guard(action: str, uri: str | Path, store: ObjectStoreSettings, call: Any) -> Any:
    try:
        return call()
    except FileNotFoundError:
        raise
    except (OSError, ConnectionError, PermissionError) as err:
        raise StateStoreError(f"could not {action} {describe(uri, store)}: {err}") from err
    except Exception as err:  # botocore's connection and credential errors are not OSErrors
        if type(err).__module__.startswith(("botocore", "aiobotocore", "aiohttp")):
            raise StateStoreError(f"could not {action} {describe(uri, store)}: {err}") from err
        raise


def exists(uri: str | Path, store: ObjectStoreSettings) -> bool:
    fs, path = filesystem(uri, store)
    return bool(_guard("read", uri, store, lambda: fs.exists(path)))


def listdir(uri: str | Path, store: ObjectStoreSettings) -> list[str]:
    """The names directly under `uri` (none if it does not exist)."""
    fs, path = filesystem(uri, store)

    def names() -> list[str]:
        if not fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))

    return _guard("list", uri, store, names)


def read_bytes(uri: str | Path, store: ObjectStoreSettings) -> bytes:
    fs, path = filesystem(uri, store)
    return _guard("read", uri, store, lambda: fs.cat_file(path))


def write_bytes(uri: str | Path, data: bytes, store: ObjectStoreSettings) -> None:
    """Write `data` at `uri` whole: readers see the old object or the new one, never half."""
    fs, path = filesystem(uri, store)
    if not is_remote(uri):
        _write_local(Path(path), data)
        return
    _guard("write", uri, store, lambda: fs.pipe_file(path, data))


def _write_local(target: Path, data: bytes) -> None:
    with replacing(target) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A new file beside `target` to write; when the block ends without error it replaces
    `target` at once (readers see the old file or the new one, never half), else it is
    removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def upload(local: Path, uri: str | Path, store: ObjectStoreSettings) -> None:
    """Copy the file `local` to `uri` (atomically, as `write_bytes`)."""
    if not is_remote(uri):
        target = Path(filesystem(uri, store)[1])
        if target.resolve() != local.resolve():
            with replacing(target) as tmp:
                shutil.copyfile(local, tmp)
        return
    fs, path = filesystem(uri, store)
    _guard("write", uri, store, lambda: fs.put_file(str(local), path))


def download(uri: str | Path, local: Path, store: ObjectStoreSettings) -> bool:
    """Bring `uri` to the file `local` unless it already holds the same version (the
    object's ETag or size and mtime, kept beside it). Returns whether it was copied."""
    fs, path = filesystem(uri, store)
    info = _guard("read", uri, store, lambda: fs.info(path))
    version = str(info.get("ETag") or (info.get("size"), info.get("mtime") or info.get("created")))
    stamp = local.with_name(f".{local.name}.version")
    if local.is_file() and stamp.is_file() and stamp.read_text() == version:
        return False
    with replacing(local) as tmp:
        _guard("read", uri, store, lambda: fs.get_file(path, str(tmp)))
    stamp.write_text(version)
    return True
