"""The GPU check's cells (benchmarks/gpu_check.py says what each measures) and the order of the
two passes; each cell is a function of its feature type's ``Subject`` and of the table so far."""
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import av

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import ROOT, VIDEO_DIR, random_batch, skip_network  # noqa: E402
from gpu_correctness import correctness  # noqa: E402
from timed_cells import CellTimeout, NotApplicable, Table  # noqa: E402

CLIP = os.path.join(VIDEO_DIR, "720p30_20s.mp4")
WARM_CLIP = os.path.join(ROOT, "sample", "b.mp4")  # the shortest sample: a first extraction, untimed
# the correctness cell's: two 5 s samples (720p and 270p, 25 and 29.97 fps) decoded at once, and
# the 20 s clip, which several processes decode in segments
SAMPLES = [os.path.join(ROOT, "sample", "a.mp4"), os.path.join(ROOT, "sample", "b.mp4"), CLIP]
SECONDS_PER_PROCESS = 20  # of feed video: two segments' worth (MIN_SEGMENT_SECONDS is 10)


def project():
    """The project's parts the check uses, imported here alone (torch and CUDA start with them)."""
    from video_features import Extractor, SettingsError

    return SettingsError, Extractor


def repeated(source: str, seconds: int) -> str:
    """``source``'s packets repeated, timestamps shifted, into a video of about ``seconds`` (no re-encode)."""
    path = os.path.join(VIDEO_DIR, f"720p30_{seconds}s_repeated.mp4")
    if os.path.exists(path):
        return path
    with av.open(source) as container:
        stream = container.streams.video[0]
        span = stream.frames * round(1 / (stream.average_rate * stream.time_base))
        copies = max(1, round(seconds / float(span * stream.time_base)))
    with av.open(path + ".part.mp4", "w") as output:
        for copy in range(copies):
            with av.open(source) as container:
                stream = container.streams.video[0]
                if copy == 0:
                    target = output.add_stream_from_template(stream)
                for packet in container.demux(stream):
                    if packet.size:
                        packet.pts += copy * span
                        packet.dts += copy * span
                        packet.stream = target
                        output.mux(packet)
    os.replace(path + ".part.mp4", path)
    return path


def extracted(extractor, paths: list[str]) -> tuple[float, int, float]:
    """Seconds, windows and the main thread's CPU seconds of extracting ``paths``; past the cell's
    limit, the rate until then goes with the timeout."""
    start, main_thread = time.perf_counter(), time.thread_time()
    windows = 0
    try:
        for result in extractor.extract_many(paths):
            if result.error:
                raise RuntimeError(f"{result.path}: {result.error}")
            windows += len(result.outputs["timestamps_ms"])
    except CellTimeout as timeout:
        windows = extractor.progress.windows_done  # the network's, of videos not finished too
        timeout.note = f"{windows / (time.perf_counter() - start):.1f} win/s over {windows} windows until then"
        raise
    return time.perf_counter() - start, windows, time.thread_time() - main_thread


def warm_up(extractor) -> tuple[float, list[str]]:
    """Seconds of a first extraction from no decoding processes (they start, CUDA pins their slots,
    the preprocessing's kernels load; a short clip for each process), the network skipped, and the
    pipeline's warnings that it could not pin the slots."""
    extractor.close()
    forward = extractor.inference._forward
    skip_network(extractor)  # its windows' network time is no start-up
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # whatever the filters outside say
            seconds, _, _ = extracted(extractor, [WARM_CLIP] * extractor.pipeline.decode_workers)
    finally:
        extractor.inference._forward = forward
    return seconds, [str(w.message) for w in caught if "could not pin" in str(w.message)]


def timed_extraction(extractor, paths: list[str]) -> tuple[float, int, float, float]:
    """Start-up seconds (untimed by the rest), then the seconds, windows and main thread's CPU
    seconds of extracting ``paths`` with the decoding processes already running."""
    startup, _ = warm_up(extractor)
    return (startup, *extracted(extractor, paths))


def network_alone(extractor, batch_size: int, min_seconds: float) -> float:
    """Windows/s of the network on random preprocessed windows already on the device, after one
    untimed forward (allocations, and cuDNN's search where cudnn_benchmark is on)."""
    import torch

    inference = extractor.inference
    clips = random_batch(extractor, batch_size).to(inference.input_dtype)  # as the pipeline builds a batch
    if inference.channels_last:
        clips = clips.contiguous(memory_format=torch.channels_last_3d)
    inference(clips)
    forwards, start = 0, time.perf_counter()
    while forwards < 3 or time.perf_counter() - start < min_seconds:
        inference(clips)[0].float().cpu()
        forwards += 1
    return forwards * batch_size / (time.perf_counter() - start)


class Subject:
    """One feature type under test and its extractors, kept from the first pass to the second."""

    def __init__(self, args, feature_type: str):
        self.args, self.feature_type = args, feature_type
        self._main = None
        self.fp32 = None  # the correctness cell's fp32 extractor with every process
        self.warm = False

    def build(self, **options):
        """An extractor with the check's settings but ``options``; a setting this machine refuses
        (bf16 on a CPU without bf16 units) makes the cell n/a."""
        SettingsError, Extractor = project()
        args = self.args
        settings = {"feature_type": self.feature_type, "device": args.device, "pretrained": False,
                    "batch_size": args.batch_size, "precision": args.precision, "decode_workers": "auto", **options}
        try:
            return Extractor(**settings)
        except SettingsError as error:
            raise NotApplicable(str(error).split(";")[0]) from None

    @property
    def main(self):
        """The extractor of the check's settings with every decoding process."""
        if self._main is None:
            self._main = self.build()
        return self._main

    @property
    def cuda(self) -> bool:
        return self.main.device.type == "cuda"

    def feed_video(self) -> str:
        all_workers = self.main.pipeline.decode_workers
        return repeated(CLIP, max(self.args.feed_seconds, SECONDS_PER_PROCESS * all_workers))

    def close(self) -> None:
        """Stops the decoding processes (the networks stay, for the second pass)."""
        for extractor in (self._main, self.fp32):
            if extractor is not None:
                extractor.close()
        self.warm = False


# The cells: each is given its subject and the table (for the figures of cells before it).

def correctness_cell(subject: Subject, table: Table) -> str:
    text, subject.fp32 = correctness(subject.build, subject.feature_type, subject.args.samples,
                                     plant=subject.args.plant_wrong_feature)
    return text


def feed_cell(workers: str) -> Callable[[Subject, Table], tuple[float, float]]:
    def feed(subject: Subject, table: Table) -> tuple[float, float]:
        count = subject.main.pipeline.decode_workers if workers == "all" else int(workers)
        with subject.build(decode_workers=count) as fed:
            skip_network(fed)
            startup, seconds, windows, main_thread = timed_extraction(fed, [subject.feed_video()])
        print(f"{subject.feature_type}: feed {workers}: start-up {startup:.1f} s (untimed)", flush=True)
        return windows / seconds, 1000 * main_thread / max(1, windows / subject.args.batch_size)

    return feed


def startup_cell(subject: Subject, table: Table) -> tuple[float, str]:
    """The main extractor's start-up, which the end-to-end cells then leave out; peak memory from here."""
    seconds, refusals = warm_up(subject.main)
    subject.warm = True
    if subject.cuda:
        import torch

        torch.cuda.reset_peak_memory_stats(subject.main.device)
    pinned = "n/a: CUDA only" if not subject.cuda else f"no: {refusals[0]}" if refusals else "yes"
    return seconds, pinned


def end_to_end_cell(name: str) -> Callable[[Subject, Table], tuple[float, object]]:
    def end_to_end(subject: Subject, table: Table) -> tuple[float, object]:
        if not subject.warm:  # the start-up cell failed or was skipped: start up untimed all the same
            startup_cell(subject, table)
        args = subject.args
        paths = [repeated(CLIP, args.long_seconds)] if name == "long" else [CLIP] * args.clips
        seconds, windows, _ = extracted(subject.main, paths)
        rate, bound = windows / seconds, bound_of(table, subject.feature_type)
        return rate, "n/a: no bound" if bound is None else rate / bound

    return end_to_end


def bound_of(table: Table, feature_type: str):
    figures = [table.number(feature_type, c) for c in ("network win/s", "feed all win/s")]
    figures = [f for f in figures if f is not None]
    return min(figures) if figures else None


def peak_memory_cell(subject: Subject, table: Table) -> float:
    if not subject.cuda:
        raise NotApplicable("CUDA only")
    import torch

    return torch.cuda.max_memory_allocated(subject.main.device) / 2**20


def network_in_fresh_process(args, feature_type: str) -> dict:
    """The network alone with cudnn_benchmark=true, timed by a process of its own (``--child-network``),
    where no layer has run before: {"windows_per_s", "pid"}."""
    argv = [sys.executable, os.path.join(HERE, "gpu_check.py"), "--child-network", "--feature-types", feature_type,
            "--device", args.device, "--batch-size", str(args.batch_size), "--precision", args.precision,
            "--min-seconds", str(args.min_seconds)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise RuntimeError(f"the fresh process failed: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_network(args) -> None:
    subject = Subject(args, args.feature_types[0])
    extractor = subject.build(cudnn_benchmark=True, decode_workers=1)
    rate = network_alone(extractor, args.batch_size, args.min_seconds)
    print(json.dumps({"windows_per_s": rate, "pid": os.getpid()}))


def cudnn_cell(subject: Subject, table: Table) -> float:
    if not subject.cuda:
        raise NotApplicable("cuDNN is CUDA's")
    return network_in_fresh_process(subject.args, subject.feature_type)["windows_per_s"]


def fp32_cell(subject: Subject, table: Table) -> float:
    extractor = subject.fp32 or subject.build(precision="fp32")  # the correctness cell's, if it got that far
    return network_alone(extractor, subject.args.batch_size, subject.args.min_seconds)


@dataclass(frozen=True)
class Cell:
    columns: tuple[str, ...]
    work: Callable[[Subject, Table], object]
    second_pass: bool = False


def cells(workers: list[str]) -> list[Cell]:
    """Every cell of a row, in the order the passes measure them."""
    network = lambda subject, table: network_alone(subject.main, subject.args.batch_size,  # noqa: E731
                                                   subject.args.min_seconds)
    first = [Cell(("correctness",), correctness_cell),
             Cell(("processes",), lambda subject, table: str(subject.main.pipeline.decode_workers)),
             Cell(("network win/s",), network),
             Cell(("feed all win/s", "main ms/batch all"), feed_cell("all")),
             Cell(("start-up s", "slots pinned"), startup_cell),
             Cell(("e2e long win/s", "long / bound"), end_to_end_cell("long")),
             Cell(("e2e clips win/s", "clips / bound"), end_to_end_cell("clips")),
             Cell(("peak GPU MB",), peak_memory_cell)]
    second = [Cell((f"feed {w} win/s", f"main ms/batch {w}"), feed_cell(w), True) for w in workers]
    second += [Cell(("network cudnn.benchmark win/s",), cudnn_cell, True),
               Cell(("network fp32 win/s",), fp32_cell, True)]
    return first + second


def plan(feature_types: list[str], workers: list[str]) -> list[tuple[str, Cell]]:
    """(feature type, cell) in the order they are measured: the first pass over every feature type,
    then the second."""
    row = cells(workers)
    return [(feature_type, cell) for second in (False, True) for feature_type in feature_types
            for cell in row if cell.second_pass == second]
