"""The one place that hides credentials from text kldiv shows or writes.

A path, a scheduler address or a storage option can carry a secret: a URL's user-info
(``s3://KEY:PASSWORD@bucket/x``, ``tcp://user:PASSWORD@host:8786``), a pre-signed URL's
query string (``?X-Amz-Signature=...``, Azure's ``?sv=...&sig=...``), a setting such as
``aws_secret_access_key=...`` typed where a path or option was expected. Every message
(:mod:`kldiv_cli.cli.boundary`), ``--debug`` traceback, report and profile passes the paths
and texts it shows through :func:`redact`; the command line a report records passes
through :func:`redact_argv`.

What is hidden, and why that much:

- **User-info of a URL**, whole (the user name of an S3 URL is an access key id, of a
  Git host a token). Only an Azure ``abfs[s]://container@account`` keeps its container:
  there the part before ``@`` is a name, never a credential.
- **Every query-string (and fragment) value** of a URL, the parameter names kept. The
  names that sign a request differ by provider and change (``X-Amz-Signature``,
  ``X-Amz-Credential``, ``X-Amz-Security-Token``, ``sig``, ``se``, ``GoogleAccessId``,
  ``Signature``, ``Key-Pair-Id``, ``token``...); a list would miss the next one, and the
  values are of no use in a message that names the object and the cause.
- **The value of a setting whose name says secret** (``password``, ``secret``, ``token``,
  ``access_key``, ``signature``, ...), whether written ``name=value`` or, mistyped,
  ``name:value``.

Text is cut into runs without whitespace first, so a password written with a raw space
(not valid in a URL, where it is ``%20``) is only hidden up to the space. The mask is
``***``. Redaction is idempotent and leaves text without these shapes as it
is (the common case costs one regular-expression search).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["MASK", "redact", "redact_argv", "redact_option"]

MASK = "***"

#: Names of settings whose value is a credential (matched inside longer names, any case:
#: ``aws_secret_access_key``, ``AZURE_STORAGE_SAS_TOKEN``, ``client_secret``...).
_SECRET_NAMES = (
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "signature",
    "access_key",
    "accesskey",
    "account_key",
    "private_key",
    "api_key",
    "apikey",
    "authorization",
)
# A run of text that could be one path, URL or setting: no space. Quotes stay in it
# (a password may hold one); the rules below allow for them around a token.
_TOKEN = re.compile(r"[^\s<>]+")
# What makes a token worth a closer look (cheap pre-check of the whole text).
_SUSPECT = re.compile(
    r"@|[?#&][^=\s]*=|" + "|".join(_SECRET_NAMES),
    re.IGNORECASE,
)
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", re.DOTALL)
_SETTING = re.compile(
    r"(?:^|(?<=[=:,;&?]))(\W*[A-Za-z0-9_\-]*(?:"
    + "|".join(_SECRET_NAMES)
    + r")[A-Za-z0-9_\-]*)([=:])(.+)$",
    re.IGNORECASE,
)
_QUERY_PAIR = re.compile(r"([?&#;][^=&#;?]*)=([^&#;]*)")
# ``user:password@host`` with no scheme (a DASK_SCHEDULER_ADDRESS, an HDFS authority).
_BARE_USERINFO = re.compile(r"^\W*[^/@:]+:[^/]*@")


def _authority(scheme: str, authority: str) -> str:
    if "@" not in authority:
        return authority
    user, _, host = authority.rpartition("@")
    if scheme.lower() in ("abfs://", "abfss://") and ":" not in user:
        return authority  # container@account: a name, not a credential
    return f"{MASK}@{host}"


def _query(rest: str) -> str:
    """Every value in the query string and fragment of a URL's path-and-after."""
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    if cut < 0:
        return rest
    head, tail = rest[:cut], rest[cut:]
    return head + _QUERY_PAIR.sub(lambda m: f"{m.group(1)}={MASK}", tail)


def _token(match: re.Match[str]) -> str:
    whole = match.group()
    # Punctuation that ends a sentence or a label ("URL: cause") is not part of a value.
    token = whole.rstrip(":;,.)]}'\"")
    return _one(token) + whole[len(token) :]


def _one(token: str) -> str:
    url = _URL.search(token)
    if url is not None:
        scheme, authority, rest = url.groups()
        return token[: url.start()] + scheme + _authority(scheme, authority) + _query(rest)
    if "?" in token:
        masked = _query(token)
        if masked != token:
            return masked
    setting = _SETTING.search(token)
    if setting is not None:
        return f"{token[: setting.start()]}{setting.group(1)}{setting.group(2)}{MASK}"
    bare = _BARE_USERINFO.match(token)
    if bare is not None:
        lead = len(token) - len(token.lstrip("([{,;=:'\""))
        return token[:lead] + MASK + "@" + token.rpartition("@")[2]
    return token


def redact(text: object) -> str:
    """``text`` with every credential it may hold replaced by ``***``.

    Parameters
    ----------
    text : object
        A message, a path, an address, a traceback (anything else through ``str``).

    Returns
    -------
    str
        The same text when it holds nothing that looks like a credential; otherwise
        URL user-info, URL query values and values of secret-named settings masked.

    Examples
    --------
    >>> redact("s3://AKIA:pw@bucket/x.bin: no such file")
    's3://***@bucket/x.bin: no such file'
    >>> redact("https://h/x?X-Amz-Signature=ab12&X-Amz-Expires=60")
    'https://h/x?X-Amz-Signature=***&X-Amz-Expires=***'
    >>> redact("got 'aws_secret_access_key:abc'")
    "got 'aws_secret_access_key:***'"
    """
    s = text if isinstance(text, str) else str(text)
    if not _SUSPECT.search(s):
        return s
    return _TOKEN.sub(_token, s)


def redact_option(pair: str, public: Iterable[str] = ()) -> str:
    """A ``--storage-option`` as it may be shown: ``key=value`` when ``key`` is one of
    the ``public`` settings (endpoint, region...), ``key=***`` for any other key, and
    ``***`` for a text that is not ``key=value`` (a value typed without its key, or with
    the wrong separator, can be the secret itself)."""
    key, sep, _ = pair.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.\-]+", key.strip()):
        return MASK
    return redact(pair) if key.strip().lower() in set(public) else f"{key}={MASK}"


def redact_argv(argv: Sequence[str], public: Iterable[str] = ()) -> list[str]:
    """A command line as a report may record it: every argument through :func:`redact`,
    and each ``--storage-option`` value through :func:`redact_option`."""
    public = tuple(public)
    out: list[str] = []
    after_option = False
    for arg in argv:
        if after_option:
            out.append(redact_option(arg, public))
        elif arg.startswith("--storage-option="):
            out.append("--storage-option=" + redact_option(arg.split("=", 1)[1], public))
        else:
            out.append(redact(arg))
        after_option = arg == "--storage-option"
    return out
