"""An HTTP proxy of the tests' own, in front of a real server (nginx, the S3 server), that does to
chosen paths what networks and servers do: answers with an error status, cuts the connection after
some bytes of the body (a clean close, or a reset), or stalls; optionally it adds latency to every
request, and it counts requests and bytes per path.

    proxy = FaultProxy("http://127.0.0.1:8080")      # started on a free loopback port
    proxy.set("/v/a.mp4", Fault.status(503, times=2))  # the first two requests get a 503
    proxy.counts("/v/a.mp4")                           # Counts(requests=..., heads=..., body_bytes=...)
    proxy.arrivals()                                   # every request's path, in order
    proxy.stop()

A thread per connection, with HTTP/1.1 keep-alive, so a client's pooled connections behave as
with the server itself. Each forwarded request opens its own connection upstream.
"""
import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import urlsplit

CHUNK = 64 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


@dataclass(frozen=True)
class Fault:
    kind: str  # "status", "cut" or "stall"
    status: int = 0
    after_bytes: int = 0  # body bytes sent before a cut or a stall
    seconds: float = 0.0  # of a stall, after which the connection is closed
    reset: bool = False  # a cut as a TCP reset (RST) rather than a clean close
    times: Optional[int] = None  # for the first ``times`` requests only (None: all)
    from_byte: int = 0  # only for requests whose range starts here or later: the file's start reads well

    @staticmethod
    def status_code(status: int, times: Optional[int] = None, from_byte: int = 0) -> "Fault":
        return Fault("status", status=status, times=times, from_byte=from_byte)

    @staticmethod
    def cut(after_bytes: int, times: Optional[int] = None, reset: bool = False, from_byte: int = 0) -> "Fault":
        return Fault("cut", after_bytes=after_bytes, reset=reset, times=times, from_byte=from_byte)

    @staticmethod
    def stall(seconds: float, after_bytes: int = 0, times: Optional[int] = None, from_byte: int = 0) -> "Fault":
        return Fault("stall", seconds=seconds, after_bytes=after_bytes, times=times, from_byte=from_byte)


@dataclass
class Counts:
    requests: int = 0  # every request, HEAD included
    heads: int = 0
    body_bytes: int = 0  # response body bytes sent to the client
    faults: int = 0  # requests a fault was applied to
    last_target: str = ""  # the last request's target, query string included, as received


@dataclass
class _State:
    faults: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    arrivals: list = field(default_factory=list)  # each request's path, in the order they came
    latency: float = 0.0


class FaultProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self._state, self._lock = _State(), threading.Lock()
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    def set(self, path: str, fault: Fault) -> None:
        with self._lock:
            self._state.faults[path] = [fault, 0]

    def set_latency(self, seconds: float) -> None:
        """Seconds added before every request is forwarded (a far-away server)."""
        self._state.latency = seconds

    def reset(self) -> None:
        """No faults, no latency, counters at zero."""
        with self._lock:
            self._state = _State()

    def counts(self, path: Optional[str] = None) -> Counts:
        """The counters of ``path``, or of every path together."""
        with self._lock:
            if path is not None:
                return Counts(**vars(self._state.counts.get(path, Counts())))
            total = Counts()
            for counts in self._state.counts.values():
                total.requests += counts.requests
                total.heads += counts.heads
                total.body_bytes += counts.body_bytes
                total.faults += counts.faults
            return total

    def arrivals(self) -> list[str]:
        """The path of every request so far, in the order they came."""
        with self._lock:
            return list(self._state.arrivals)

    def _begin(self, path: str, target: str, method: str, first_byte: int) -> Optional[Fault]:
        """Counts a request; the fault to apply to it, if any."""
        with self._lock:
            self._state.arrivals.append(path)
            counts = self._state.counts.setdefault(path, Counts())
            counts.requests += 1
            counts.heads += method == "HEAD"
            counts.last_target = target
            entry = self._state.faults.get(path)
            if entry is None or (entry[0].times is not None and entry[1] >= entry[0].times):
                return None
            if first_byte < entry[0].from_byte:
                return None
            if method == "HEAD" and entry[0].kind != "status":
                return None  # a cut or a stall is of a body
            entry[1] += 1
            counts.faults += 1
            return entry[0]

    def _sent(self, path: str, count: int) -> None:
        with self._lock:
            self._state.counts.setdefault(path, Counts()).body_bytes += count

    def stop(self) -> None:
        self.stopping.set()  # ends stalls
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _handler_for(proxy: FaultProxy):
    class Handler(_Handler):
        pass

    Handler.proxy = proxy
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    proxy: FaultProxy

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: a request line may carry a signed URL's query string

    def do_GET(self):
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _forward(self) -> None:
        proxy = self.proxy
        path = urlsplit(self.path).path
        range_start = re.match(r"bytes=(\d+)", self.headers.get("Range", ""))
        fault = proxy._begin(path, self.path, self.command, int(range_start.group(1)) if range_start else 0)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if proxy._state.latency:
            time.sleep(proxy._state.latency)
        if fault is not None and fault.kind == "status":
            self._reply(fault.status)
            return
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
        try:
            headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self._relay(response, path, fault)
        finally:
            upstream.close()

    def _reply(self, status: int) -> None:
        body = f"{status} from the fault proxy\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _relay(self, response: http.client.HTTPResponse, path: str, fault: Optional[Fault]) -> None:
        """The upstream response, streamed (read whole first where upstream sends it chunked), with
        ``fault``'s cut or stall."""
        headers = [(key, value) for key, value in response.getheaders() if key.lower() not in HOP_BY_HOP]
        body = None
        if response.getheader("Content-Length") is None:
            body = response.read()
            headers = [(key, value) for key, value in headers if key.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        self.send_response(response.status, response.reason)
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        chunks = iter([body]) if body is not None else iter(lambda: response.read(CHUNK), b"")
        for chunk in chunks:
            if fault is not None and sent + len(chunk) >= fault.after_bytes:
                self.wfile.write(chunk[: fault.after_bytes - sent])
                self.proxy._sent(path, fault.after_bytes - sent)
                self._break(fault)
                return
            self.wfile.write(chunk)
            sent += len(chunk)
            self.proxy._sent(path, len(chunk))

    def _break(self, fault: Fault) -> None:
        """Ends the connection in the middle of a body: at once (a cut), or after a silence (a stall)."""
        self.wfile.flush()
        if fault.kind == "stall":
            self.proxy.stopping.wait(fault.seconds)
        if fault.reset:  # linger 0: close sends a TCP reset instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
