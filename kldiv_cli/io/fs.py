"""Object storage through ``pyarrow.fs``: ``s3://``, ``gs://``, ``abfs://`` and ``hdfs://``.

A path with one of :data:`SCHEMES` is *remote*; everything else is a local path, read
with the built-in ``open``. ``--storage-option key=value`` settings (:func:`parse_options`)
choose the endpoint, the region or anonymous access; credentials come only from the
environment (``AWS_ACCESS_KEY_ID``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_ACCOUNT_KEY``, Kerberos tickets...), as each SDK finds them, and no
message ever shows one: errors name the path (redacted, :func:`kldiv_cli.redact.redact`)
and a short cause of our own wording. A URL that carries credentials in its user-info
is refused, and an option that does not parse is never echoed. What an SDK writes to
the process's stderr (Azure's credential chain runs ``az`` in a shell, and the shell
says ``az: not found``) is dropped: every call into a store runs :func:`sdk_quiet`.

Outputs (:func:`write_remote`) are written to a local temporary file first and then
sent with one upload; an object store shows an object only once its upload completes,
so a failed run leaves nothing (and a replaced object keeps its old content).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO, ParamSpec, TypeVar

from ..errors import InputError, OutputError, UsageError
from ..redact import redact
from .formats import is_parquet

T = TypeVar("T")
P = ParamSpec("P")

#: URL schemes read through ``pyarrow.fs``, and the filesystem class of each.
SCHEMES: dict[str, str] = {
    "s3": "S3FileSystem",
    "gs": "GcsFileSystem",
    "gcs": "GcsFileSystem",
    "abfs": "AzureFileSystem",
    "abfss": "AzureFileSystem",
    "hdfs": "HadoopFileSystem",
}

#: ``--storage-option`` keys per filesystem class, and how each value is parsed.
#: Credentials are deliberately absent: they come from the environment only.
_OPTIONS: dict[str, dict[str, Callable[[str], Any]]] = {
    "S3FileSystem": {
        "endpoint_override": str,
        "region": str,
        "anonymous": lambda v: _boolean("anonymous", v),
        "scheme": str,
        "force_virtual_addressing": lambda v: _boolean("force_virtual_addressing", v),
        "connect_timeout": float,
        "request_timeout": float,
    },
    "GcsFileSystem": {
        "endpoint_override": str,
        "anonymous": lambda v: _boolean("anonymous", v),
        "scheme": str,
        "project_id": str,
        "default_bucket_location": str,
        "retry_time_limit": lambda v: _seconds("retry_time_limit", v),
    },
    "AzureFileSystem": {
        "account_name": str,
        "blob_storage_authority": str,
        "dfs_storage_authority": str,
        "blob_storage_scheme": str,
        "dfs_storage_scheme": str,
    },
    "HadoopFileSystem": {"replication": int, "buffer_size": int},
}
#: Aliases users type for the S3/GCS endpoint.
_ALIASES = {"endpoint": "endpoint_override", "endpoint_url": "endpoint_override"}
#: Where each store's credentials come from, for messages.
_CREDENTIALS = {
    "S3FileSystem": "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY",
    "GcsFileSystem": "GOOGLE_APPLICATION_CREDENTIALS",
    "AzureFileSystem": "AZURE_STORAGE_ACCOUNT_KEY, or an az login",
    "HadoopFileSystem": "a Kerberos ticket",
}
_SECRET_WORDS = ("key", "secret", "token", "password", "credential", "sas")


#: The ``--storage-option`` settings of this run (see :func:`configure`).
_DEFAULTS: dict[str, str] = {}


_QUIET = threading.Lock()
_quiet_depth = 0
_saved_stderr = -1


@contextmanager
def sdk_quiet() -> Iterator[None]:
    """File descriptor 2 points at ``/dev/null`` while the block runs (nested and
    concurrent blocks share one redirection), so that subprocesses and C++ SDKs cannot
    write to the user's stderr. kldiv writes no message while a store call runs; a
    closed stderr is left as it is."""
    global _quiet_depth, _saved_stderr
    with _QUIET:
        if _quiet_depth == 0:
            try:
                saved = os.dup(2)
            except OSError:  # fd 2 closed: nothing can reach the user anyway
                saved = -1
            if saved >= 0:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            _saved_stderr = saved
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_stderr >= 0:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = -1


def _quiet(function: Callable[P, T]) -> Callable[P, T]:
    """``function`` run inside :func:`sdk_quiet`."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with sdk_quiet():
            return function(*args, **kwargs)

    return wrapper


def option_names() -> set[str]:
    """Every ``--storage-option`` key kldiv takes (none is a credential: those are
    refused), aliases included: a recorded command line may show their values."""
    return {key for keys in _OPTIONS.values() for key in keys} | set(_ALIASES)


def configure(options: Mapping[str, str]) -> None:
    """Set the run's ``--storage-option`` settings: every function here uses them when
    it is not given its own (the CLI calls this once, before opening anything)."""
    _DEFAULTS.clear()
    _DEFAULTS.update(options)


def current_options() -> dict[str, str]:
    """The settings :func:`configure` set (a copy, for tasks sent to workers)."""
    return dict(_DEFAULTS)


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"--storage-option {name} must be true or false")


def _seconds(name: str, value: str) -> Any:
    import datetime
    import math

    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"--storage-option {name} must be a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


#: How long GCS retries before giving up: without credentials its client asks the cloud
#: metadata server and retries for 15 minutes by default.
_GCS_RETRY_SECONDS = "5"


def scheme(path: str) -> str | None:
    """The remote scheme of ``path`` (``"s3"``...), or None for a local path."""
    head, sep, _ = path.partition("://")
    return head.lower() if sep and head.lower() in SCHEMES else None


def is_remote(path: str | None) -> bool:
    """Whether ``path`` names an object in a store (``s3://bucket/key`` ...)."""
    return path is not None and scheme(path) is not None


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """``--storage-option key=value`` settings as a dict (values kept as text).

    Raises
    ------
    UsageError
        For a setting without ``=``, an empty key, or a credential (those come from
        the environment, so that they never appear in a command line or a log). A
        setting that does not parse is not echoed: it may be a credential typed with
        the wrong separator (``aws_secret_access_key:...``) or without its key.
    """
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = _ALIASES.get(key.strip().lower(), key.strip().lower())
        if not sep or not key:
            raise UsageError(
                "--storage-option takes KEY=VALUE; one was given without a key or '=' "
                "(not shown: it may hold a credential)"
            )
        if any(word in key for word in _SECRET_WORDS) and key != "account_name":
            raise UsageError(
                f"--storage-option {key}: credentials are read from the environment only "
                "(for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
            )
        options[key] = value
    return options


@_quiet
def filesystem(path: str, options: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """The ``pyarrow.fs`` filesystem for a remote ``path`` and the path inside it.

    ``options`` are :func:`parse_options` settings, checked against the keys the
    filesystem takes. HDFS takes its host and port from the URL (``hdfs://host:port/p``).
    """
    import pyarrow.fs as pafs

    kind = scheme(path)
    if kind is None:
        raise UsageError(f"{redact(path)!r} is not an object-store URL")
    _refuse_userinfo(path, kind)
    options = _DEFAULTS if options is None else options
    cls_name = SCHEMES[kind]
    allowed = _OPTIONS[cls_name]
    kwargs: dict[str, Any] = {}
    if cls_name == "GcsFileSystem":
        options = {"retry_time_limit": _GCS_RETRY_SECONDS, **options}
    for key, value in options.items():
        if key not in allowed:
            raise UsageError(
                f"--storage-option {key} does not apply to {kind}:// paths; "
                f"use one of {', '.join(sorted(allowed))}"
            )
        try:
            kwargs[key] = allowed[key](value)
        except ValueError:
            raise UsageError(f"--storage-option {key}: not a valid value") from None
    try:
        return _make(pafs, cls_name, path.split("://", 1)[1], kwargs)
    except (OSError, TypeError, ValueError) as exc:
        # A missing client library (HDFS needs Java's libhdfs) or account (Azure).
        what = (
            "an account (--storage-option account_name=...)"
            if kind.startswith("abfs")
            else ("its client libraries (HDFS: Java and libhdfs)")
        )
        raise InputError(
            _label(path),
            f"cannot open the {kind}:// store here: it needs {what} ({type(exc).__name__})",
        ) from None


def _refuse_userinfo(path: str, kind: str) -> None:
    """A URL with credentials in it (``s3://KEY:SECRET@bucket/x``) is refused: they
    would end up in shell histories and logs; the SDKs read them from the environment.
    Azure's ``container@account`` and HDFS's ``user@host`` are names, and stay."""
    user, at, _ = path.split("://", 1)[1].partition("/")[0].rpartition("@")
    if at and (":" in user or kind in ("s3", "gs", "gcs")):
        raise UsageError(
            f"{_label(path)}: credentials in the URL are not used; give them in the "
            f"environment ({_CREDENTIALS[SCHEMES[kind]]})"
        )


def _make(pafs: Any, cls_name: str, rest: str, kwargs: dict[str, Any]) -> tuple[Any, str]:
    """The filesystem object and the path inside it, from the URL after ``scheme://``."""
    if cls_name == "HadoopFileSystem":
        authority, _, inner = rest.partition("/")
        user, _, authority = authority.rpartition("@")
        host, _, port = authority.partition(":")
        if port and not port.isdigit():
            raise UsageError(f"{_label('hdfs://' + rest)}: the port must be a number")
        if user:
            kwargs["user"] = user
        fs = pafs.HadoopFileSystem(host or "default", int(port or 8020), **kwargs)
        return fs, "/" + inner
    if cls_name == "AzureFileSystem":
        container_at, _, inner = rest.partition("/")
        container, _, account = container_at.partition("@")
        if account and "account_name" not in kwargs:
            kwargs["account_name"] = account.split(".")[0]
        fs = pafs.AzureFileSystem(**kwargs)
        return fs, f"{container}/{inner}".rstrip("/")
    fs = getattr(pafs, cls_name)(**kwargs)
    return fs, rest.rstrip("/")


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a store's call raises: ``OSError``, and Arrow's own errors (an Azure
    credential chain that fails is an ``ArrowException``, not an ``OSError``)."""
    import pyarrow as pa

    return (OSError, pa.ArrowException)


def _cause(exc: BaseException) -> str:
    """A short cause of a store's error, in our words: SDK messages can be long and
    name request ids, headers or (for some SDKs) credential sources."""
    text = str(exc).lower().replace("_", " ")
    if "nosuchbucket" in text.replace(" ", "") or "bucket does not exist" in text:
        return "no such bucket"
    if any(w in text for w in ("access denied", "accessdenied", "forbidden", "403")):
        return (
            "access denied (no credentials, or credentials without access to it; "
            "kldiv reads them from the environment only)"
        )
    if any(w in text for w in ("credential", "invalidaccesskeyid", "signature", "oauth2", "401")):
        return "no valid credentials (kldiv reads them from the environment only)"
    if any(w in text for w in ("not found", "nosuchkey", "does not exist", "404")):
        return "no such file"
    if any(w in text for w in ("resolve", "connect", "timed out", "timeout", "curl")):
        return "the object store cannot be reached"
    return "cannot be read from the object store"


def _input_error(path: str, exc: BaseException) -> InputError:
    return InputError(_label(path), _cause(exc))


@_quiet
def info(path: str, options: Mapping[str, str] | None = None) -> Any:
    """``pyarrow.fs.FileInfo`` of a remote path; an error when the bucket or the
    object does not exist or cannot be reached."""
    import pyarrow.fs as pafs

    fs, inner = filesystem(path, options)
    try:
        found = fs.get_file_info(inner)
        if found.type == pafs.FileType.NotFound:
            bucket = inner.split("/", 1)[0]
            if bucket != inner and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise InputError(_label(path), "no such bucket")
            raise InputError(_label(path), "no such file")
    except _store_errors() as exc:
        raise _input_error(path, exc) from None
    return found


def _label(path: str) -> str:
    from ..text import clean

    return clean(redact(path))


def open_input(path: str, options: Mapping[str, str] | None = None) -> BinaryIO:
    """A seekable binary file for ``path``: a local file, or a remote object read with
    ranged requests (``seek`` + ``read`` fetch only the bytes asked for)."""
    if not is_remote(path):
        return open(path, "rb")
    fs, inner = filesystem(path, options)
    info(path, options)
    try:
        with sdk_quiet():
            # pyarrow is untyped; its NativeFile is a seekable binary file.
            f: BinaryIO = fs.open_input_file(inner)
    except _store_errors() as exc:
        raise _input_error(path, exc) from None
    return f


def size(path: str, options: Mapping[str, str] | None = None) -> int:
    """The size of a local or remote file in bytes."""
    if not is_remote(path):
        return os.path.getsize(path)
    return int(info(path, options).size)


def read_bytes(path: str, options: Mapping[str, str] | None = None) -> bytes:
    """A whole remote object in memory, for readers that take bytes (as for stdin)."""
    with open_input(path, options) as f:
        try:
            with sdk_quiet():
                return f.read()
        except _store_errors() as exc:
            raise _input_error(path, exc) from None


@_quiet
def check_destination(path: str, options: Mapping[str, str] | None = None) -> None:
    """An object can be written at ``path``: it names a key in a bucket that exists.
    Checked before any work is done (as ``writers.check_destination`` for files).

    Raises
    ------
    OutputError
        Naming what is wrong with ``path``.
    """
    import pyarrow.fs as pafs

    fs, inner = filesystem(path, options)
    bucket, _, key = inner.partition("/")
    if not key:
        raise OutputError(f"{_label(path)}: names a bucket, not an object; add a file name")
    try:
        found = fs.get_file_info([bucket, inner])
    except _store_errors() as exc:
        raise OutputError(f"{_label(path)}: {_cause(exc)}") from None
    if found[0].type == pafs.FileType.NotFound:
        raise OutputError(f"{_label(path)}: no such bucket")
    if found[1].type == pafs.FileType.Directory:
        raise OutputError(f"{_label(path)}: is a folder; give a file name")


@_quiet
def list_parquet(path: str, options: Mapping[str, str] | None = None) -> list[str] | None:
    """The Parquet objects under a remote prefix (a dataset folder), sorted, as URLs;
    None when ``path`` is one object. As for local datasets, names starting with ``.``
    or ``_`` (``_SUCCESS``, ``_metadata``) are skipped."""
    import pyarrow.fs as pafs

    found = info(path, options)
    if found.type != pafs.FileType.Directory:
        return None
    fs, inner = filesystem(path, options)
    prefix = path.split("://", 1)[0] + "://"
    try:
        entries = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    except _store_errors() as exc:
        raise _input_error(path, exc) from None
    files = sorted(
        e.path
        for e in entries
        if e.type == pafs.FileType.File
        and is_parquet(e.base_name)
        and not e.base_name.startswith((".", "_"))
    )
    if not files:
        raise InputError(_label(path), "is a folder that holds no .parquet files")
    return [prefix + f for f in files]


def write_remote(
    path: str, write: Callable[[BinaryIO], T], options: Mapping[str, str] | None = None
) -> T:
    """Write an object atomically: ``write(f)`` fills a local temporary file, which is
    then sent in one upload. On any failure nothing is uploaded and the temporary file
    is removed, so the store holds the old object or none.

    Raises
    ------
    OutputError
        When the bucket does not exist, the credentials are refused, or the upload fails.
    """

    import tempfile

    check_destination(path, options)
    fs, inner = filesystem(path, options)
    fd, temp = tempfile.mkstemp(prefix=".kldiv-", suffix=".part")
    try:
        with os.fdopen(fd, "w+b") as f:
            result = write(f)
            f.flush()
            _upload(fs, inner, f, path)
        return result
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass


@_quiet
def _upload(fs: Any, inner: str, f: BinaryIO, path: str) -> None:
    """Send a whole local file as one object. The bytes go in ONE ``write`` (a memory
    map, not a copy): the stream's close completes the object, and a close forced by an
    interruption can then only complete it whole, never with part of the data."""
    import mmap

    f.seek(0, os.SEEK_END)
    n = f.tell()
    try:
        with fs.open_output_stream(inner) as out:
            if n:
                with mmap.mmap(f.fileno(), n, access=mmap.ACCESS_READ) as view:
                    out.write(view)
    except _store_errors() as exc:
        raise OutputError(f"{_label(path)}: {_cause(exc)}") from None
