"""Remote inputs (utils/video/remote.py) against real servers (tests/servers.py): the frames PyAV
decodes from http:// (nginx) and s3:// (moto's S3 server) are the local file's, bit for bit, for
the containers whose index sits in different places; what is read stays near the file's size;
folders list in the order of local ones; credentials come from the AWS_* environment."""
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import ROOT, needs_ffmpeg
from tests.decoding import decode_all
from tests.servers import nginx_program, running_nginx
from video_features.utils.run.inputs import VIDEO_EXTENSIONS, videos_in
from video_features.utils.video.frame_index import first_frame_from, read_index
from video_features.utils.video.reader import VideoReader
from video_features.utils.video.remote import (
    is_remote,
    list_remote,
    open_remote,
    redact,
    remote_size,
    unsupported_reason,
)
from video_features.utils.video.remote_retry import Policy

pytestmark = needs_ffmpeg

# Blocks far smaller than the default, so that these small files take many requests, cache
# evictions and jumps between blocks
SMALL_BLOCKS = Policy(block_size=64 * 1024, cached_blocks=3)
# Where each container keeps what a demuxer reads first
CONTAINERS = {
    "faststart.mp4": ["-movflags", "+faststart"],  # the index (moov) before the frames
    "moov_at_end.mp4": [],  # the index after them: read before any frame
    "video.mkv": [],  # Matroska: cues at the end
    "video.ts": ["-f", "mpegts"],  # no index; the duration comes from the last timestamps
}


def make_video(path: Path, extra: list[str]) -> Path:
    """4 s of 320x240 H.264 at 25 fps with B-frames, and an AAC track interleaved with it."""
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4", "-c:v", "libx264",
                    "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", *extra, str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("remote-videos")
    return {name: make_video(folder / name, extra) for name, extra in CONTAINERS.items()}


@pytest.fixture(scope="module")
def on_nginx(nginx_server, videos) -> dict[str, str]:
    """Each video's http:// URL on nginx."""
    folder = nginx_server.root / "remote"
    folder.mkdir(exist_ok=True)
    for name, path in videos.items():
        shutil.copy(path, folder / name)
    return {name: f"{nginx_server.url}/remote/{name}" for name in videos}


@pytest.fixture(scope="module")
def in_bucket(s3_server, videos) -> dict[str, str]:
    """Each video's s3:// URL on the S3 server."""
    return {name: s3_server.put(f"remote/{name}", path.read_bytes()) for name, path in videos.items()}


def frame_digests(source) -> list[bytes]:
    """blake2b of every decoded frame's RGB pixels, in order."""
    with av.open(source) as container:
        return [hashlib.blake2b(frame.to_ndarray(format="rgb24")).digest() for frame in container.decode(video=0)]


def test_urls_of_installed_protocols_are_remote_and_paths_are_not():
    assert is_remote("https://example.com/a.mp4") and is_remote("http://h:8080/a.mp4?x=1")
    assert is_remote("s3://bucket/key/a.mp4") and is_remote("S3://bucket/a.mp4")
    assert not is_remote("/data/a.mp4") and not is_remote("a.mp4") and not is_remote("file:///data/a.mp4")
    assert not is_remote("no-such-protocol://x/a.mp4")
    if importlib.util.find_spec("gcsfs") is None:  # a protocol whose package is missing
        assert not is_remote("gs://bucket/a.mp4")
        assert "gcsfs" in unsupported_reason("gs://bucket/a.mp4")


def test_redact_keeps_where_the_file_is_and_drops_what_grants_access():
    url = "https://user:pa55@host.example:8443/v/a%20b.mp4?X-Amz-Signature=abc&X-Amz-Credential=k#t=3"
    assert redact(url) == "https://host.example:8443/v/a%20b.mp4"
    assert redact("s3://bucket/dir/a.mp4") == "s3://bucket/dir/a.mp4"
    assert redact("/local/a.mp4?not-a-query") == "/local/a.mp4?not-a-query"


@pytest.mark.parametrize("name", CONTAINERS)
def test_frames_from_nginx_are_the_local_files(name, videos, on_nginx):
    expected = frame_digests(str(videos[name]))
    assert len(expected) == 100
    with open_remote(on_nginx[name], policy=SMALL_BLOCKS) as file:
        assert frame_digests(file) == expected
        assert file.requests >= 3  # it did read in parts


@pytest.mark.parametrize("name", CONTAINERS)
def test_frames_from_s3_are_the_local_files(name, videos, in_bucket, s3_env):
    size = videos[name].stat().st_size
    assert remote_size(in_bucket[name]) == size
    with open_remote(in_bucket[name], size, policy=SMALL_BLOCKS) as file:
        assert frame_digests(file) == frame_digests(str(videos[name]))


# FFmpeg's MPEG-TS demuxer reads up to its last 250,000 bytes again for the duration (libavformat's
# DURATION_MAX_READ_SIZE): a file this small is read twice when its blocks do not all stay cached
TAIL_READ = {"video.ts": 250_000}


@pytest.mark.parametrize("name", CONTAINERS)
def test_what_is_read_stays_near_the_file_size(name, videos, on_nginx, faults):
    """Every block is fetched about once: jumps to the index and back hit the kept blocks."""
    size, block = videos[name].stat().st_size, SMALL_BLOCKS.block_size
    path = f"/remote/{name}"
    with open_remote(faults.url + path, size, policy=SMALL_BLOCKS) as file:
        frame_digests(file)
    counts = faults.counts(path)
    assert counts.heads == 0  # the size was given: nothing asked before the first block
    assert size <= counts.body_bytes <= size + TAIL_READ.get(name, 0) + 2 * block
    assert counts.requests <= -(-(size + TAIL_READ.get(name, 0)) // block) + 2


def test_a_small_file_takes_one_request_with_the_default_blocks(videos, on_nginx, faults):
    path = "/remote/faststart.mp4"
    with open_remote(faults.url + path) as file:  # size unknown: one HEAD
        frame_digests(file)
    counts = faults.counts(path)
    assert (counts.heads, counts.requests, counts.body_bytes) == (1, 2, videos["faststart.mp4"].stat().st_size)


def test_a_signed_url_reaches_the_server_unchanged(videos, on_nginx, faults):
    query = "X-Amz-Credential=AKIA%2F20261207%2Fus-east-1&X-Amz-Signature=0a1b+2c%3D&X-Amz-Expires=60"
    path = "/remote/video.mkv"
    with open_remote(f"{faults.url}{path}?{query}", policy=SMALL_BLOCKS) as file:
        assert frame_digests(file) == frame_digests(str(videos["video.mkv"]))
    assert faults.counts(path).last_target == f"{path}?{query}"


def test_a_name_with_spaces_and_accents_is_read_as_typed_or_encoded(videos, nginx_server):
    shutil.copy(videos["faststart.mp4"], nginx_server.root / "clip é 1.mp4")
    expected = frame_digests(str(videos["faststart.mp4"]))
    for url in [f"{nginx_server.url}/clip é 1.mp4", f"{nginx_server.url}/clip%20%C3%A9%201.mp4"]:
        with open_remote(url) as file:
            assert frame_digests(file) == expected


def make_tree(root: Path, data: bytes) -> None:
    for relative in ["b.mp4", "a.MKV", "notes.txt", ".hidden.mp4", "z.ts", "sub/c.mp4", "sub/.cache/d.mp4",
                     ".git/e.mp4", "a_dir/f.webm", "a_dir/deeper/g.mov", "sub2/h.mp4", "with space/i.mp4"]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)


def test_folders_list_in_the_order_of_local_folders(tmp_path, nginx_server, s3_env):
    local = tmp_path / "tree"
    make_tree(local, b"x" * 10)
    expected = [Path(path).relative_to(local).as_posix() for path in videos_in(str(local))]
    assert expected[:3] == ["a.MKV", "b.mp4", "z.ts"] and "with space/i.mp4" in expected
    shutil.copytree(local, nginx_server.root / "tree")
    for path in local.rglob("*"):
        if path.is_file():
            s3_env.put(f"tree/{path.relative_to(local).as_posix()}", path.read_bytes())
    s3_env.put("tree2/not-under-the-prefix.mp4", b"x")
    http = list_remote(f"{nginx_server.url}/tree/", VIDEO_EXTENSIONS)
    assert [listed.url for listed in http] == [f"{nginx_server.url}/tree/{name.replace(' ', '%20')}"
                                               for name in expected]
    s3 = list_remote("s3://videos/tree/", VIDEO_EXTENSIONS)
    assert [listed.url for listed in s3] == [f"s3://videos/tree/{name}" for name in expected]
    assert {listed.size for listed in s3} == {10}  # S3 listings give sizes: no HEAD needed later


@pytest.mark.parametrize("name", ["faststart.mp4", "video.ts"])
def test_the_frame_index_reads_through_an_opener(name, videos, on_nginx):
    local = read_index(str(videos[name]), 0)
    size = videos[name].stat().st_size
    remote = read_index(lambda: open_remote(on_nginx[name], size, policy=SMALL_BLOCKS), 0)
    assert remote is not None and remote.cuts == local.cuts
    assert np.array_equal(remote.pts, local.pts) and np.array_equal(remote.packet_pts, local.packet_pts)
    cut = local.cuts[2]
    opener = lambda: open_remote(on_nginx[name], size, policy=SMALL_BLOCKS)  # noqa: E731
    assert first_frame_from(opener, 0, cut) == first_frame_from(str(videos[name]), 0, cut) == cut.pts


@pytest.mark.parametrize("name", CONTAINERS)
def test_a_readers_frame_index_reads_the_blocks_it_keeps(name, videos, on_nginx, faults):
    """The index pass before the decode goes through the reader's kept blocks: a video of one block
    (the default 4 MiB) is fetched once, and gives the local file's index and frames."""
    path, local = f"/remote/{name}", videos[name]
    with VideoReader(faults.url + path, size=local.stat().st_size) as reader:
        index = reader.index()
        images = [frame.image for frame in decode_all(reader)]
    with VideoReader(str(local)) as reader:
        assert index.cuts == reader.index().cuts and np.array_equal(index.pts, reader.index().pts)
        assert all(np.array_equal(a, b) for a, b in zip(images, (frame.image for frame in decode_all(reader)),
                                                         strict=True))
    counts = faults.counts(path)
    assert (counts.requests, counts.body_bytes) == (1, local.stat().st_size)


def test_s3_credentials_come_from_a_profile(videos, in_bucket, s3_env, monkeypatch, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[moto]\naws_access_key_id = {s3_env.env()['AWS_ACCESS_KEY_ID']}\n"
                           f"aws_secret_access_key = {s3_env.env()['AWS_SECRET_ACCESS_KEY']}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "moto")
    assert remote_size(in_bucket["video.ts"]) == videos["video.ts"].stat().st_size


@pytest.mark.nginx
def test_nginx_stops_with_its_worker_and_leaves_no_process(tmp_path):
    if nginx_program() is None:
        pytest.skip("needs nginx (the Debian package; setup.sh --test installs it as root)")
    (tmp_path / "root").mkdir()
    (tmp_path / "state").mkdir()
    with running_nginx(tmp_path / "root", tmp_path / "state") as served:
        master = int((tmp_path / "state" / "nginx.pid").read_text())
        workers = [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        assert len(workers) == 1 and urllib.request.urlopen(served.url + "/").status == 200
    assert not [pid for pid in [master, *workers] if Path(f"/proc/{pid}").exists()]


def test_the_decoding_processes_stay_free_of_torch():
    code = "import sys, video_features.utils.video.remote; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
