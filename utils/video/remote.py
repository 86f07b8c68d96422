"""Videos in object storage and on web servers: ``s3://bucket/key``, ``https://...`` and any other
fsspec protocol whose package is installed (``gs://`` with gcsfs), read through a seekable file
object that PyAV opens like a file (``av.open(open_remote(url))``), and folders of them listed.

A file is read in ranged requests of ``Policy.block_size`` bytes (4 MiB), never downloaded whole:
fsspec's "background" cache keeps the last ``Policy.cached_blocks`` blocks and fetches the next
block in a thread while the decoder reads the current one, so a request's latency overlaps
decoding. Why these sizes: a decoder reads forward, with a few jumps (an MP4's index at the end,
an MPEG-TS's last timestamps, a segment's key frame); kept blocks serve the jumps back to the
header and index, and 4 MiB is 1-2 s of 1080p H.264 (still 0.15 s at a 200 MB/s link), far longer
than a request's 20-100 ms of latency, while a short clip costs one or two requests and the bytes
read past what the decoder needs stay under one block per jump (benchmarks/remote.py measures).
With the size given (a listing knows it) nothing is asked before the first block: no HEAD request.

Credentials and endpoints come from the standard environment through s3fs and botocore
(``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ~/.aws); none is passed here or
ever named in a message. Errors are ``VideoError`` with a one-line cause (utils/video/remote_retry.py);
name a URL in messages and logs with ``redact``: a signed URL's query string is a credential.
This module imports no torch: decoding processes use it.
"""
import io
import logging
import os
import re
import traceback
from typing import NamedTuple, Optional
from urllib.parse import quote, unquote

import fsspec
from fsspec.caching import caches

from video_features.utils.errors import VideoError
from video_features.utils.video.remote_retry import DEFAULT_POLICY, Policy, RangesIgnored, ShortRead, with_retries

CACHE_TYPE = "background"  # fsspec's LRU block cache that fetches the next block in a thread
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
LOCAL_PROTOCOLS = {"file", "local"}  # paths by another name: read as files


def protocol_of(path: str) -> Optional[str]:
    """The URL scheme of ``path`` in lower case, or None for a path."""
    match = SCHEME.match(path)
    return match.group(1).lower() if match else None


def unsupported_reason(path: str) -> Optional[str]:
    """Why a URL cannot be read (its protocol unknown to fsspec, or its package missing); None if it can."""
    protocol = protocol_of(path)
    if protocol is None or protocol in LOCAL_PROTOCOLS:
        return "not a URL"
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        return f"no reader for {protocol}:// URLs"
    except ImportError as error:  # fsspec's message names the package to install
        return f"{protocol}:// URLs need a package: {error}"
    return None


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL this module reads: http(s), s3, and any protocol fsspec knows whose
    package is installed. ``file://`` URLs and plain paths are not."""
    return unsupported_reason(path) is None


def redact(url: str) -> str:
    """``url`` without its query string, fragment or user:password: what messages and logs may show."""
    if protocol_of(url) is None:
        return url
    scheme, rest = url.split("://", 1)  # by hand: urlsplit raises on a malformed host
    netloc, slash, path = re.split(r"[?#]", rest, maxsplit=1)[0].partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def canonical(path: str) -> str:
    """What logs and orderings call an input: a URL without its secrets, a path made absolute."""
    return redact(path) if protocol_of(path) is not None else os.path.abspath(path)


URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted."""
    return URL_IN_TEXT.sub(lambda match: redact(match.group(0)), text)


class _RedactingFilter(logging.Filter):
    """fsspec's HTTP back end logs the URLs it reads at DEBUG, query string and password included."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:  # an error's text holds the URL too
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        record.msg, record.args, record.exc_info, record.exc_text = redact_text(text), None, None, None
        return True


logging.getLogger("fsspec.http").addFilter(_RedactingFilter())

_filesystems: dict = {}


def _aws_environment() -> tuple:
    """The variables botocore reads: a test or a long process that changes them gets a new client."""
    return tuple(sorted((key, value) for key, value in os.environ.items() if key.startswith("AWS_")))


def _options(protocol: str, policy: Policy) -> dict:
    """Each back end's timeouts, and its own retries turned off: ``with_retries`` does them all."""
    if protocol in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.connect_timeout, sock_read=policy.read_timeout)
        # encoded: the URL goes out as given (``_as_sent``); re-encoding it would turn a signed
        # URL's %2F into / and could void its signature
        return {"client_kwargs": {"timeout": timeout}, "encoded": True}
    if protocol in ("s3", "s3a"):
        return {"config_kwargs": {"connect_timeout": policy.connect_timeout, "read_timeout": policy.read_timeout,
                                  "retries": {"total_max_attempts": 1}}}
    return {}


def _as_sent(url: str) -> str:
    """``url`` with what a URL cannot hold (spaces, non-ASCII letters) percent-encoded, and nothing
    else changed: escapes already there stay as they are."""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


def filesystem(url: str, policy: Policy = DEFAULT_POLICY) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system for ``url``'s protocol (one per process, protocol, policy and AWS
    environment) and the path it names the file by."""
    reason = unsupported_reason(url)
    if reason is not None:
        raise VideoError(reason)
    protocol = protocol_of(url)
    key = (protocol, policy, _aws_environment() if protocol in ("s3", "s3a") else ())
    if key not in _filesystems:
        fs = fsspec.filesystem(protocol, skip_instance_cache=True, **_options(protocol, policy))
        if protocol in ("s3", "s3a"):
            fs.retries = 1  # s3fs's own retry loop (5 tries by default)
        _filesystems[key] = fs
    fs = _filesystems[key]
    return fs, _as_sent(url) if protocol in ("http", "https") else fs._strip_protocol(url)


def remote_size(url: str, policy: Policy = DEFAULT_POLICY) -> int:
    """The file's size in bytes (a HEAD request, or S3's HeadObject)."""
    fs, path = filesystem(url, policy)
    size = with_retries(lambda: fs.info(path).get("size"), policy)
    if size is None:
        raise VideoError("the server gives no size (no Content-Length), so the file cannot be read in parts")
    return int(size)


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.0f} KB"


class RemoteFile(io.RawIOBase):
    """A read-only, seekable file object over ranged requests; see the module's docstring.

    ``requests`` and ``bytes_fetched`` count what it asked the server for. After a failed read,
    reads give end-of-file and ``failure`` holds the error: PyAV raises the first error a read
    raised, and a read that raised again would have PyAV print the earlier one as dropped.
    """

    mode = "rb"  # PyAV opens a file object whose mode does not start with "r" for writing

    def __init__(self, url: str, size: int, policy: Policy = DEFAULT_POLICY, blocks_of: Optional["RemoteFile"] = None):
        """``blocks_of``: a file of the same URL whose kept blocks this one reads through (see ``another``)."""
        super().__init__()
        self.name, self._url = redact(url), url
        self._fs, self._path = filesystem(url, policy)
        self.size, self.policy = size, policy
        self.position = 0
        self.requests = 0
        self.bytes_fetched = 0
        self.failure: Optional[VideoError] = None
        self._owns_cache = blocks_of is None
        self._cache = blocks_of._cache if blocks_of is not None else caches[CACHE_TYPE](
            policy.block_size, self._fetch, size, maxblocks=policy.cached_blocks)

    def another(self) -> "RemoteFile":
        """A second file object at its own position over this one's kept blocks, for a second pass in
        the same thread (the frame index before the decode): a short video is fetched once. Closing it
        leaves the blocks to this one."""
        return RemoteFile(self._url, self.size, self.policy, blocks_of=self)

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) in one ranged request, retried; the cache calls it,
        in its thread for the next block."""
        end = min(end, self.size)

        def once() -> bytes:
            self.requests += 1
            data = self._fs.cat_file(self._path, start=start, end=end)
            self.bytes_fetched += len(data)
            if len(data) == self.size and end - start < self.size:
                raise RangesIgnored()
            if len(data) != end - start:
                raise ShortRead(len(data), end - start)
            return data

        return with_retries(once, self.policy, f" at {_megabytes(start)} of {_megabytes(self.size)}")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self.name}: seek to a negative position")
        self.position = base + offset
        return self.position

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed file")
        if self.failure is not None:
            return b""
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        try:
            data = self._cache._fetch(self.position, end)
        except VideoError as error:
            self.failure = error
            raise
        self.position += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed and self._owns_cache:
            self._cache.close()  # stops the read-ahead thread (waits for a request in flight)
        super().close()


def open_remote(url: str, size: Optional[int] = None, policy: Policy = DEFAULT_POLICY) -> RemoteFile:
    """A seekable binary file object reading ``url`` in ranged requests. With ``size`` (bytes, from a
    listing) no request is made before the first read; without it, one asks for the size."""
    if size is None:
        size = remote_size(url, policy)
    if size <= 0:
        raise VideoError("the file is empty (0 bytes)")
    return RemoteFile(url, size, policy)


class Listed(NamedTuple):
    url: str
    size: Optional[int]  # bytes, where the listing gives it (S3 does; an HTTP index page does not)


def _order_key(relative: str) -> tuple:
    """Local folders' order: a folder's own files first, then its subfolders', each by name."""
    *folders, name = relative.split("/")
    return tuple((1, folder) for folder in folders) + ((0, name),)


def list_remote(prefix: str, extensions: tuple[str, ...], policy: Policy = DEFAULT_POLICY) -> list[Listed]:
    """The files under ``prefix`` (a URL ending in "/"), recursively, whose names end in one of
    ``extensions`` (any case), in the order of a local folder (utils/config.py ``videos_in``);
    hidden files and folders (a name starting with ".") are left out. Over HTTP, the server's
    index pages are read (nginx's autoindex, say)."""
    if not prefix.endswith("/"):
        raise VideoError("a folder URL must end in '/'")
    fs, path = filesystem(prefix, policy)
    found = with_retries(lambda: fs.find(path, detail=True), policy)
    base = path.rstrip("/") + "/"
    extensions = tuple(extension.lower() for extension in extensions)
    entries = []
    for name, info in found.items():
        if info.get("type") == "directory" or not name.startswith(base):
            continue
        relative = name[len(base):]
        readable = unquote(relative)  # HTTP index pages give percent-encoded links
        parts = readable.split("/")
        if any(part.startswith(".") for part in parts) or not readable.lower().endswith(extensions):
            continue
        size = info.get("size")
        entries.append((_order_key(readable), Listed(prefix + relative, int(size) if size is not None else None)))
    return [listed for _, listed in sorted(entries, key=lambda entry: entry[0])]
