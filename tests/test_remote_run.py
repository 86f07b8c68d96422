"""A run over a list mixing local files, http:// URLs of a real nginx and s3:// keys of a real S3
server gives the features of the same videos read from local disk (a long one cut into segments
that open the URL each); each fault is one line naming the URL without its query string, the other
videos are extracted, and a rerun skips what is done."""
import json
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import needs_ffmpeg, run_cli
from tests.fault_proxy import Fault
from video_features.utils.store.names import output_name

MODEL = "r21d/r2plus1d_18_16_kinetics"
SECRET = "X-Amz-Signature=d41d8cd98f00b204"  # a signed URL's query string: a credential


def clip(path, seconds, container_options=()):
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25", "-t", str(seconds),
                    "-c:v", "libx264", "-g", "25", *container_options, str(path)], check=True)
    return path


@pytest.fixture
def videos(tmp_path, nginx_server, s3_env):
    local = tmp_path / "local"
    local.mkdir()
    served = nginx_server.root / "run"
    served.mkdir(exist_ok=True)
    clip(local / "long.mp4", 25)  # cut into two segments: each opens the URL again
    clip(local / "b.mkv", 3)
    clip(local / "c.ts", 3)
    shutil.copy(local / "long.mp4", served / "long.mp4")
    for name in ("recovers.mp4", "cut.mp4", "stalls.mp4"):
        shutil.copy(local / "long.mp4" if name == "recovers.mp4" else local / "b.mkv", served / name)
    return {
        "local": str(local / "c.ts"),
        "http": f"{nginx_server.url}/run/long.mp4?{SECRET}",
        "s3": s3_env.put("run/b.mkv", (local / "b.mkv").read_bytes()),
    }, local


@needs_ffmpeg
def test_local_http_and_s3_videos_give_local_features_and_each_fault_one_line(videos, faults, tmp_path,
                                                                              r21d_checkpoint):
    (good, local) = videos
    faults.set("/run/recovers.mp4", Fault.status_code(503, times=1))
    faults.set("/run/cut.mp4", Fault.cut(20_000))
    faults.set("/run/stalls.mp4", Fault.stall(30, after_bytes=1000))
    broken = {"missing": f"{faults.url}/run/missing.mp4?{SECRET}", "cut": f"{faults.url}/run/cut.mp4",
              "stalls": f"{faults.url}/run/stalls.mp4"}
    recovers = f"{faults.url}/run/recovers.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([*good.values(), *broken.values(), recovers]) + "\n")
    out = tmp_path / "out"
    args = [f"file_with_video_paths={listing}", f"weights_path={r21d_checkpoint}", "device=cpu", "decode_workers=2",
            "on_extraction=save_numpy", f"output_path={out}", "remote_attempts=2", "remote_timeout=2"]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    errors = sorted(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert errors == sorted([
        f"error: {faults.url}/run/missing.mp4: HTTP 404 Not Found",
        f"error: {broken['cut']}: connection closed mid-response at 0 KB of {(local / 'b.mkv').stat().st_size // 1000} KB (2 attempts)",
        f"error: {broken['stalls']}: no data for 2 s at 0 KB of {(local / 'b.mkv').stat().st_size // 1000} KB (2 attempts)",
    ]), done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("4 extracted, 0 skipped, 3 failed")

    reference = tmp_path / "reference"
    assert run_cli(f"video_paths=[{local}]", f"weights_path={r21d_checkpoint}", "device=cpu", "on_extraction=save_numpy",
                   f"output_path={reference}", f"input_root={local}", cwd=tmp_path).returncode == 0
    for url, file in [(good["http"], "long"), (good["s3"], "b"), (recovers, "long")]:
        for key in ("r21d", "timestamps_ms", "fps"):
            ours = np.load(out / MODEL / f"{output_name(url)}_{key}.npy")
            np.testing.assert_array_equal(ours, np.load(reference / MODEL / f"{file}_{key}.npy"), err_msg=url)
    (log,) = (out / ".runs").iterdir()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    long = [r for r in records if r.get("path") == good["http"].split("?")[0]]
    assert long and long[0]["segments"] == 2  # each segment opened the URL on its own
    seen = done.stdout + done.stderr + log.read_text() + " ".join(str(p) for p in out.rglob("*"))
    assert "d41d8cd98f00b204" not in seen  # the signed URL's query string, nowhere

    again = run_cli(*args, cwd=tmp_path)
    assert again.stderr.strip().splitlines()[-1].startswith("0 extracted, 4 skipped, 3 failed"), again.stderr
