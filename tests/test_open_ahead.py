"""A decoding process opens the URL of its next video while it decodes the current one
(utils/video/open_ahead.py, and the schedule's reservations in utils/pipeline/schedule.py): the next
video's first requests overlap the current one's decoding, each URL is still asked for once, the
features are those of the local files, a fault met ahead is that video's own one-line error, and a
video another process took is never read from what was opened ahead for it."""
import shutil

import numpy as np
import pytest

from tests.conftest import make_extractor, needs_ffmpeg
from tests.fault_proxy import Fault
from tests.test_remote_run import clip

pytestmark = needs_ffmpeg


@pytest.fixture(scope="module")
def clips(tmp_path_factory, nginx_server):
    """Four clips of 2 s, one of 16 s (one segment) and one of 25 s (two segments with two
    processes), local and on nginx."""
    local = tmp_path_factory.mktemp("ahead")
    served = nginx_server.root / "ahead"
    served.mkdir(exist_ok=True)
    for number in range(4):
        clip(local / f"clip{number}.mp4", 2 + 0.2 * number)
    clip(local / "long.mp4", 25)
    clip(local / "whole.mp4", 16)
    for path in local.iterdir():
        shutil.copy(path, served / path.name)
    return local


def features_by_path(extractor, paths: list[str]) -> dict[str, np.ndarray]:
    return {result.path: (result.outputs["r21d"] if result.error is None else result.error)
            for result in extractor.extract_many(paths)}


def test_the_next_url_is_asked_for_while_the_current_video_decodes(clips, faults):
    faults.set_latency(0.3)  # each request waits: the first of the next video comes before the last of this one
    names = ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    extractor = make_extractor(feature_type="r21d", decode_workers=1)
    try:
        remote = features_by_path(extractor, [f"{faults.url}/ahead/{name}" for name in names])
        local = features_by_path(extractor, [str(clips / name) for name in names])
    finally:
        extractor.close()
    arrivals = faults.arrivals()
    first, second = "/ahead/clip0.mp4", "/ahead/clip1.mp4"
    last_of_first = len(arrivals) - 1 - arrivals[::-1].index(first)
    assert arrivals.index(second) < last_of_first, arrivals
    for name in names:
        counts = faults.counts(f"/ahead/{name}")
        assert (counts.heads, counts.requests) == (1, 2), (name, counts)  # its size, then its one block
        np.testing.assert_array_equal(remote[f"{faults.url}/ahead/{name}"], local[str(clips / name)])


def test_a_fault_met_ahead_is_that_videos_own_error_and_the_others_go_on(clips, faults):
    faults.set("/ahead/clip1.mp4", Fault.status_code(404))
    faults.set("/ahead/clip2.mp4", Fault.status_code(503, times=1))  # recovers on its second try
    urls = [f"{faults.url}/ahead/clip{number}.mp4" for number in range(4)]
    extractor = make_extractor(feature_type="r21d", decode_workers=1, remote_attempts=2)
    try:
        remote = features_by_path(extractor, urls)
        local = features_by_path(extractor, [str(clips / f"clip{number}.mp4") for number in range(4)])
    finally:
        extractor.close()
    assert remote[urls[1]] == "HTTP 404 Not Found"
    for number in (0, 2, 3):
        np.testing.assert_array_equal(remote[urls[number]], local[str(clips / f"clip{number}.mp4")])
    assert faults.counts("/ahead/clip2.mp4").faults == 1


def test_a_video_another_process_took_is_not_read_from_its_opening_ahead(clips, nginx_server, tmp_path):
    """With two processes, the first takes a video of one segment and the clip after it is reserved
    for it (opened ahead there); the idle second process takes the clip over. Then the served clip changes,
    and the next call's clip goes to the first process: it must read the new file, not its old opening."""
    served = nginx_server.root / "ahead"
    shutil.copy(clips / "clip1.mp4", served / "changing.mp4")
    urls = [f"{nginx_server.url}/ahead/whole.mp4", f"{nginx_server.url}/ahead/changing.mp4"]
    extractor = make_extractor(feature_type="r21d", decode_workers=2)
    try:
        before = features_by_path(extractor, urls)
        shutil.copy(clips / "clip3.mp4", served / "changing.mp4")
        after = features_by_path(extractor, urls[1:])
        local = features_by_path(extractor, [str(clips / name) for name in ("whole.mp4", "clip1.mp4", "clip3.mp4")])
    finally:
        extractor.close()
        (served / "changing.mp4").unlink()
    np.testing.assert_array_equal(before[urls[0]], local[str(clips / "whole.mp4")])
    np.testing.assert_array_equal(before[urls[1]], local[str(clips / "clip1.mp4")])
    np.testing.assert_array_equal(after[urls[1]], local[str(clips / "clip3.mp4")])


def test_with_two_processes_a_mixed_list_gives_every_video_once(clips, faults):
    names = ["clip0.mp4", "long.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4"]
    paths = [f"{faults.url}/ahead/{name}" for name in names[:3]] + [str(clips / names[3])] + [
        f"{faults.url}/ahead/{names[4]}"]
    extractor = make_extractor(feature_type="r21d", decode_workers=2)
    try:
        results = list(extractor.extract_many(paths))
        local = features_by_path(extractor, [str(clips / name) for name in names])
    finally:
        extractor.close()
    assert sorted(result.path for result in results) == sorted(paths)
    for result in results:
        assert result.error is None, (result.path, result.error)
        name = result.path.rsplit("/", 1)[-1]
        np.testing.assert_array_equal(result.outputs["r21d"], local[str(clips / name)])
