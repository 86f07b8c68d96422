"""Real servers for the tests of remote reads, started once per session on free loopback ports and
stopped at its end (a pytest plugin: tests/conftest.py lists it in ``pytest_plugins``).

- ``nginx_server``: the Debian package's nginx, with a config of its own in a temporary folder
  (not the system's), serving a folder with byte ranges and index pages (autoindex). Tests that
  use it are marked ``nginx`` and skipped where nginx is not installed (``.ci/run`` fails then:
  ``setup.sh --test`` installs it as root).
- ``s3_server``: moto's standalone S3 server (``python -m moto.server``, as s3fs's own tests use),
  with an empty bucket; ``s3_env`` points the standard AWS_* variables at it for one test.
- ``fault_proxy`` / ``s3_fault_proxy``: tests/fault_proxy.py in front of each; the function-scoped
  ``faults`` and ``s3_faults`` give it with no faults, no latency and counters at zero.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.fault_proxy import FaultProxy

NGINX_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
NGINX_CONF = """\
daemon off;
worker_processes 1;
{user}
pid {state}/nginx.pid;
error_log {state}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    types {{ video/mp4 mp4; video/x-matroska mkv; video/mp2t ts; }}
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        autoindex on;
    }}
}}
"""
BUCKET = "videos"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto-test-key-id", "AWS_SECRET_ACCESS_KEY": "moto-test-secret-key-do-not-print"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerFailed(RuntimeError):
    """A server did not start."""


def wait_until_up(url: str, process: subprocess.Popen, what: str, seconds: float = 30) -> None:
    """Until ``url`` answers (any HTTP status); ServerFailed with its output if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise ServerFailed(f"{what} exited with {process.returncode} before answering:\n{output}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise ServerFailed(f"{what} did not answer at {url} within {seconds:g} s")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Ends a server this plugin started (nginx's master stops its worker on SIGTERM)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Served:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    root: Path  # the folder it serves: a file written at root/x is at url/x


def nginx_program() -> Optional[str]:
    return shutil.which("nginx", path=NGINX_PATH)


@contextmanager
def running_nginx(root: Path, state: Path) -> Iterator[Served]:
    """nginx serving ``root`` on a free loopback port, its config, pid and log in ``state``;
    stopped on leaving (also benchmarks/remote.py's)."""
    port = free_port()
    # as root, nginx's worker would run as nobody, who cannot read pytest's private temporary folders
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = state / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, state=state, port=port, root=root))
    process = subprocess.Popen([nginx_program(), "-c", str(conf), "-p", str(state), "-e", str(state / "error.log")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", process, "nginx")
        yield Served(f"http://127.0.0.1:{port}", root)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory) -> Served:
    if nginx_program() is None:
        pytest.skip("needs nginx (the Debian package; setup.sh --test installs it as root)")
    with running_nginx(tmp_path_factory.mktemp("served"), tmp_path_factory.mktemp("nginx")) as served:
        yield served


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    client: object  # boto3's S3 client of the server itself

    def env(self, endpoint: str = "") -> dict:
        """The AWS_* variables a client reads to reach this server (or ``endpoint``, a proxy of it)."""
        return {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint or self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def put(self, key: str, data: bytes) -> str:
        """Stores ``data`` under ``key``; its s3:// URL."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    import boto3

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_up(f"{endpoint}/moto-api/", process, "moto's S3 server")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, BUCKET, s3)
    finally:
        stop(process)


def _isolate_aws(monkeypatch, tmp_path) -> None:
    """No AWS_* variable or ~/.aws file of this machine reaches the test."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path) -> S3Server:
    """The standard AWS_* variables pointing at the S3 server, for this test only."""
    _isolate_aws(monkeypatch, tmp_path)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture(scope="session")
def fault_proxy(nginx_server) -> FaultProxy:
    proxy = FaultProxy(nginx_server.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def faults(fault_proxy) -> FaultProxy:
    """The proxy in front of nginx, reset before and after the test."""
    fault_proxy.reset()
    yield fault_proxy
    fault_proxy.reset()


@pytest.fixture(scope="session")
def s3_fault_proxy(s3_server) -> FaultProxy:
    proxy = FaultProxy(s3_server.endpoint)
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_faults(s3_fault_proxy, s3_server, monkeypatch, tmp_path) -> FaultProxy:
    """The proxy in front of the S3 server, reset, with AWS_ENDPOINT_URL pointing at it."""
    _isolate_aws(monkeypatch, tmp_path)
    for key, value in s3_server.env(s3_fault_proxy.url).items():
        monkeypatch.setenv(key, value)
    s3_fault_proxy.reset()
    yield s3_fault_proxy
    s3_fault_proxy.reset()


def pytest_collection_modifyitems(items):
    """Tests that use nginx are ``nginx``-marked: .ci/run fails if one is skipped."""
    for item in items:
        if "nginx_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.nginx)
