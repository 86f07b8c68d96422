"""What went wrong with a remote read, in one line, and whether trying again may help.

fsspec's HTTP and S3 back ends raise what aiohttp, botocore and s3fs raise; their messages carry
the URL, query string (a signed URL's signature) included. The causes here are built from the
errors' types and status codes alone, never from their text, so no message names more than
``redact`` leaves of a URL.
"""
import http
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

from video_features.utils.errors import VideoError

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """How hard a remote read tries. The defaults suit object storage on a data-centre network;
    tests shorten them."""

    attempts: int = 4  # a try and three retries of a transient error (5xx, 429, reset, timeout)
    backoff: float = 0.5  # seconds before the first retry, doubled for each next one (with jitter)
    max_backoff: float = 8.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # seconds without a byte before a request is given up
    block_size: int = 4 * 2**20  # bytes per ranged request (see utils/video/remote.py)
    cached_blocks: int = 4  # blocks kept per open file: the header and the index, the current and the next

    def delay(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1, 2, ...): exponential, capped, and jittered so
        that many processes refused at once do not come back at once."""
        return min(self.max_backoff, self.backoff * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


DEFAULT_POLICY = Policy()

# Statuses a server gives for a load or an outage that passes: worth another try
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}


class ShortRead(Exception):
    """A ranged response with fewer bytes than asked for (and no error from the transport)."""

    def __init__(self, got: int, wanted: int):
        super().__init__(f"short read: {got} of {wanted} bytes")
        self.got, self.wanted = got, wanted


class RangesIgnored(Exception):
    """The server answered a ranged request with the whole file."""


def _chain(error: BaseException):
    """The error and those it was raised from, newest first."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _status(error: BaseException) -> Optional[tuple[int, str]]:
    """(HTTP status, detail) of an HTTP error response anywhere in the chain: aiohttp's
    ClientResponseError, or botocore's ClientError (the detail is S3's error code)."""
    for link in _chain(error):
        status = getattr(link, "status", None)
        if isinstance(status, int) and hasattr(link, "request_info"):  # aiohttp's ClientResponseError
            return status, ""
        response = getattr(link, "response", None)
        if isinstance(response, dict) and "ResponseMetadata" in response:
            code = response.get("Error", {}).get("Code", "")
            status = response["ResponseMetadata"].get("HTTPStatusCode")
            if isinstance(status, int):
                return status, "" if code == str(status) else code
    return None


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# Type names, so that this module needs neither aiohttp nor botocore to be importable
TIMEOUTS = {"ServerTimeoutError", "ConnectionTimeoutError", "SocketTimeoutError", "ReadTimeoutError",
            "ConnectTimeoutError", "FSTimeoutError", "TimeoutError"}
# A body shorter than its Content-Length (the server closed or reset the connection mid-response)
CUT_SHORT = {"ClientPayloadError", "ContentLengthError", "TransferEncodingError", "IncompleteRead",
             "IncompleteReadError", "ResponseStreamingError"}
RESETS = {"ServerDisconnectedError", "ClientOSError", "ConnectionResetError", "BrokenPipeError",
          "ConnectionClosedError", "ProtocolError"}
NO_CONNECTION = {"ClientConnectorError", "EndpointConnectionError", "ConnectionRefusedError"}
NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "NoRegionError"}


def classify(error: BaseException, policy: Policy) -> tuple[str, bool]:
    """(the cause in a few words, whether a retry may help)."""
    while isinstance(error, FileNotFoundError) and error.__cause__ is not None:
        error = error.__cause__  # fsspec's HTTP info() turns every failure into a FileNotFoundError
    names = {type(link).__name__ for link in _chain(error)}
    found = _status(error)
    if found is not None:
        status, code = found
        cause = f"HTTP {status} {_phrase(status)}".rstrip() + (f" ({code})" if code else "")
        return cause, status in TRANSIENT_STATUSES
    if isinstance(error, RangesIgnored):
        return "the server ignores byte ranges (it sent the whole file for a part of it)", False
    if isinstance(error, ShortRead):
        return f"the server sent {error.got} of the {error.wanted} bytes asked for", True
    if isinstance(error, FileNotFoundError):  # fsspec's HTTP back end raises it for a 404, with no status
        return "HTTP 404 Not Found", False
    if isinstance(error, PermissionError):
        return "HTTP 403 Forbidden", False
    if names & NO_CREDENTIALS:
        return "no usable credentials (AWS_* variables, AWS_PROFILE or ~/.aws)", False
    if names & TIMEOUTS or any(isinstance(link, TimeoutError) for link in _chain(error)):
        return f"no data for {policy.read_timeout:g} s", True
    if names & NO_CONNECTION:
        return "cannot connect to the server", True
    if names & CUT_SHORT:
        return "connection closed mid-response", True
    if names & RESETS or any(isinstance(link, ConnectionError) for link in _chain(error)):
        return "connection reset", True
    return f"{type(error).__name__} while reading", False


def with_retries(action: Callable[[], T], policy: Policy, where: str = "") -> T:
    """``action()``, tried again after a transient error up to ``policy.attempts`` times in all.
    Every failure becomes a VideoError whose message is one line: the cause, ``where`` (a place in
    the file, say), and how many attempts were made."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except VideoError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure of a read is this video's
            cause, transient = classify(error, policy)
            if not transient or attempt == policy.attempts:
                tries = f" ({attempt} attempts)" if attempt > 1 else ""
                # from None: the chained errors' messages hold the full URL
                raise VideoError(f"{cause}{where}{tries}") from None
        time.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")
