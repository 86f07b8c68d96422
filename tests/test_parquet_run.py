"""A run into Parquet shards keeps every guarantee of per-video files: two processes on one list,
one killed with SIGKILL mid-run, and the command run again give every video exactly once in
committed shards, with the features of a per-video run, status right, no temporary file left; the
folder exports to HDF5 with every array equal."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, needs_ffmpeg, run_cli
from video_features.utils.store.hdf5 import export_hdf5
from video_features.utils.store.shard_index import read_video

MODEL = os.path.join("r21d", "r2plus1d_18_16_kinetics")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    for number in range(8):
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=96x64:rate=25,hue=h={number * 40}",
                        "-t", "2", "-c:v", "libx264", "-g", "25", str(folder / f"clip{number}.mp4")], check=True)
    listing = folder / "list.txt"
    listing.write_text("".join(f"{folder / f'clip{number}.mp4'}\n" for number in range(8)))
    return folder, listing


def command(listing, out, checkpoint, *extra):
    return [f"file_with_video_paths={listing}", f"weights_path={checkpoint}", "device=cpu", f"output_path={out}",
            f"input_root={listing.parent}", *extra]


def start(args, cwd):
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)


def committed_names(folder) -> list[str]:
    return [name for path in sorted(folder.glob("*.parquet")) for name in pq.read_table(path, columns=["name"])["name"].to_pylist()]


@needs_ffmpeg
def test_two_processes_one_killed_mid_run_and_a_rerun_give_every_video_once(clips, tmp_path, r21d_checkpoint):
    folder, listing = clips
    out = tmp_path / "parquet"
    parquet = command(listing, out, r21d_checkpoint, "on_extraction=save_parquet", "shard_videos=2")
    first = start(parquet, tmp_path)
    second = start(parquet, tmp_path)
    deadline = time.monotonic() + 600
    shards = out / MODEL
    while not list(shards.glob(f"*-{first.pid}-*.parquet")):  # the first has committed a shard: now it dies
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.wait(timeout=600) == 0, second.communicate()[1]
    again = run_cli(*parquet, cwd=tmp_path)
    assert again.returncode == 0, again.stderr

    names = committed_names(shards)
    assert sorted(names) == [f"clip{number}" for number in range(8)]  # each exactly once
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-") or p.suffix == ".claim"]
    status = run_cli("status=true", *parquet, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.startswith("all 8 videos done (r21d/r2plus1d_18_16_kinetics; ")

    per_video = tmp_path / "numpy"
    assert run_cli(*command(listing, per_video, r21d_checkpoint, "on_extraction=save_numpy"), cwd=tmp_path).returncode == 0
    for name in names:
        row = read_video(str(shards), name)
        for key in ("r21d", "timestamps_ms", "fps"):
            np.testing.assert_array_equal(row[key], np.load(per_video / MODEL / f"{name}_{key}.npy"), err_msg=name)

    exported = tmp_path / "features.h5"
    assert export_hdf5(str(shards), str(exported)) == 8
    with h5py.File(exported) as file:
        for name in names:
            for key in ("r21d", "timestamps_ms", "fps"):
                np.testing.assert_array_equal(file[name][key][()], np.load(per_video / MODEL / f"{name}_{key}.npy"))


@needs_ffmpeg
def test_a_rerun_skips_what_the_shards_hold_without_a_claim_and_a_settings_change_extracts_again(clips, tmp_path,
                                                                                                  r21d_checkpoint):
    folder, listing = clips
    out = tmp_path / "parquet"
    parquet = command(listing, out, r21d_checkpoint, "on_extraction=save_parquet", "shard_videos=3")
    assert run_cli(*parquet, cwd=tmp_path).returncode == 0
    shards = sorted((out / MODEL).glob("*.parquet"))
    assert len(shards) == 3  # 3 + 3 + 2 videos
    again = run_cli(*parquet, cwd=tmp_path)
    assert again.stderr.strip().splitlines()[-1] == "0 extracted, 8 skipped, 0 failed"
    other = run_cli(*parquet, "stack_size=8", cwd=tmp_path)
    assert other.stderr.strip().splitlines()[-1] == ("8 extracted, 0 skipped, 0 failed "
                                                     "(8 replaced outputs made with other settings)")
