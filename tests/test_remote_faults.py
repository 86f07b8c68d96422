"""Faults of remote reads, injected by tests/fault_proxy.py in front of a real nginx and a real S3
server: each gives one VideoError whose message is one line with the cause; transient ones (5xx,
a cut connection, a stall) are retried a bounded number of times, and succeed when the fault
passes; 403 and 404 are not retried; no message or log holds a signed URL's query string, a
password in a URL, or the AWS secret key."""
import dataclasses
import logging
import threading
import time
import traceback
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import av
import pytest

from tests.conftest import needs_ffmpeg
from tests.fault_proxy import Fault
from tests.servers import S3_CREDENTIALS, free_port
from tests.test_remote import frame_digests, make_video
from video_features.utils.errors import VideoError
from video_features.utils.video.remote import open_remote, redact
from video_features.utils.video.remote_retry import Policy

pytestmark = needs_ffmpeg

BLOCK = 64 * 1024
QUICK = Policy(block_size=BLOCK, cached_blocks=3, attempts=3, backoff=0.01, connect_timeout=1.0, read_timeout=1.0)
SECRETS = ("sig-do-not-show", "hunter2")
PATH = "/faults/moov_at_end.mp4"


@pytest.fixture(scope="module")
def video(nginx_server):
    """An MP4 with its index at the end (reads jump to the end and back), served by nginx."""
    folder = nginx_server.root / "faults"
    folder.mkdir(exist_ok=True)
    path = make_video(folder / "moov_at_end.mp4", [])
    return path, frame_digests(str(path))


@pytest.fixture(scope="module")
def faststart(nginx_server, video):
    """An MP4 with its index first: read from start to end."""
    path = make_video(nginx_server.root / "faults" / "faststart.mp4", ["-movflags", "+faststart"])
    return path, frame_digests(str(path))


def read(url: str, size=None, policy: Policy = QUICK) -> list[bytes]:
    with open_remote(url, size, policy=policy) as file:
        return frame_digests(file)


def failure(url: str, size=None) -> VideoError:
    with pytest.raises(VideoError) as caught:
        read(url, size)
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("fault, message, requests", [
    (Fault.status_code(404), "HTTP 404 Not Found at 0 KB of {kb} KB", 1),
    (Fault.status_code(403), "HTTP 403 Forbidden at 0 KB of {kb} KB", 1),
    (Fault.status_code(503), "HTTP 503 Service Unavailable at 0 KB of {kb} KB (3 attempts)", 3),
    (Fault.cut(10_000), "connection closed mid-response at 0 KB of {kb} KB (3 attempts)", 3),
    (Fault.cut(10_000, reset=True), "connection closed mid-response at 0 KB of {kb} KB (3 attempts)", 3),
    (Fault.stall(30, after_bytes=1000), "no data for 1 s at 0 KB of {kb} KB (3 attempts)", 3),
], ids=["404", "403", "503", "cut", "reset", "stall"])
def test_a_fault_that_lasts_fails_the_video_in_one_line(fault, message, requests, video, faults):
    size = video[0].stat().st_size
    faults.set(PATH, fault)
    started = time.monotonic()
    error = failure(faults.url + PATH, size)
    assert str(error) == message.format(kb=round(size / 1000))
    assert faults.counts(PATH).requests == requests  # 403 and 404 are not retried
    assert time.monotonic() - started < QUICK.attempts * QUICK.read_timeout + 3  # a stall is given up


@pytest.mark.parametrize("fault", [Fault.status_code(503, times=2), Fault.cut(10_000, times=2),
                                   Fault.cut(10_000, times=1, reset=True), Fault.stall(30, times=1)],
                         ids=["503", "cut", "reset", "stall"])
def test_a_fault_that_passes_is_retried_and_the_frames_are_the_same(fault, video, faults):
    # every block kept: with evictions, which blocks are fetched again depends on when the
    # read-ahead thread's requests end, so a busy machine could count more requests than a clean read
    keep_all = dataclasses.replace(QUICK, cached_blocks=64)
    assert read(faults.url + PATH, video[0].stat().st_size, keep_all) == video[1]
    counts = faults.counts(PATH)
    clean = counts.requests
    faults.reset()
    faults.set(PATH, fault)
    assert read(faults.url + PATH, video[0].stat().st_size, keep_all) == video[1]
    counts = faults.counts(PATH)
    assert counts.faults == fault.times and counts.requests == clean + fault.times


def test_a_file_cut_off_midway_fails_after_its_first_frames(faststart, faults, capfd):
    """PyAV raises the read's own error out of the decoding loop, printing nothing."""
    size, path = faststart[0].stat().st_size, "/faults/faststart.mp4"
    faults.set(path, Fault.cut(1000, from_byte=2 * BLOCK))  # the third block
    decoded = 0
    with pytest.raises(VideoError) as caught, open_remote(faults.url + path, size, policy=QUICK) as file:
        with av.open(file) as container:
            for _ in container.decode(video=0):
                decoded += 1
    assert 0 < decoded < len(faststart[1])
    kb = round(2 * BLOCK / 1000), round(size / 1000)
    assert str(caught.value) == "connection closed mid-response at {} KB of {} KB (3 attempts)".format(*kb)
    assert "PyAV" not in capfd.readouterr().err  # "PyAV library exception being dropped" and its traceback


class _WholeFiles(SimpleHTTPRequestHandler):
    """Python's own file server, which ignores Range headers: every GET sends the whole file."""

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def test_a_server_that_ignores_byte_ranges_is_named_not_downloaded_per_block(video):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_WholeFiles, directory=str(video[0].parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        error = failure(f"http://127.0.0.1:{server.server_address[1]}/{video[0].name}")
    finally:
        server.shutdown()
        server.server_close()
    assert str(error) == "the server ignores byte ranges (it sent the whole file for a part of it) at 0 KB of " \
        f"{round(video[0].stat().st_size / 1000)} KB"


def test_no_server_at_all_is_retried_then_named(video):
    port = free_port()
    error = failure(f"http://127.0.0.1:{port}{PATH}")
    assert str(error) == "cannot connect to the server (3 attempts)"


def test_missing_and_forbidden_files_fail_before_reading(video, faults):
    assert str(failure(faults.url + "/faults/no-such.mp4")) == "HTTP 404 Not Found"
    faults.set(PATH, Fault.status_code(403))
    assert str(failure(faults.url + PATH)) == "HTTP 403 Forbidden"


def secret_free(text: str) -> bool:
    return not any(secret in text for secret in (*SECRETS, S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]))


@pytest.mark.parametrize("fault", [Fault.status_code(404), Fault.status_code(503), Fault.cut(10_000),
                                   Fault.stall(30, after_bytes=1000)], ids=["404", "503", "cut", "stall"])
def test_a_signed_url_and_a_password_never_show(fault, video, faults, caplog, capfd):
    url = f"http://user:{SECRETS[1]}@{faults.url[7:]}{PATH}?X-Amz-Signature={SECRETS[0]}&X-Amz-Expires=60"
    assert redact(url) == faults.url + PATH
    faults.set(PATH, fault)
    with caplog.at_level(logging.DEBUG):
        error = failure(url)
    shown = [str(error), repr(error), "".join(traceback.format_exception(error)), caplog.text, *capfd.readouterr()]
    assert all(secret_free(text) for text in shown), shown
    assert SECRETS[0] in faults.counts(PATH).last_target  # it was sent, though


def test_s3_faults_are_named_and_transient_ones_retried(video, s3_server, s3_faults, caplog, capfd):
    url = s3_server.put("faults/moov_at_end.mp4", video[0].read_bytes())
    path = "/videos/faults/moov_at_end.mp4"
    with caplog.at_level(logging.DEBUG):
        assert str(failure(url.replace("moov", "no-such"))) == "HTTP 404 Not Found"
        s3_faults.set(path, Fault.status_code(403))
        assert str(failure(url)) == "HTTP 403 Forbidden"
        s3_faults.set(path, Fault.status_code(503))
        assert str(failure(url)) == "HTTP 503 Service Unavailable (3 attempts)"
        for fault in [Fault.status_code(503, times=2), Fault.cut(10_000, times=2), Fault.stall(30, times=1)]:
            s3_faults.reset()
            s3_faults.set(path, fault)
            assert read(url) == video[1]
            assert s3_faults.counts(path).faults == fault.times
    assert secret_free(caplog.text) and all(secret_free(text) for text in capfd.readouterr())
