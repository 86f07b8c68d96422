"""Where an end-to-end run's time goes on a CPU: per thread and per pipeline stage; prints Markdown
(a summary row per feature type, then a table of threads and one of stages for each).

    python benchmarks/profile_threads.py                       # every feature type, the 1-minute 720p video
    python benchmarks/profile_threads.py --feature-types slowfast --rounds 3

One fresh process per feature type and round (the rounds interleaved), extracting the video of
benchmarks/benchmark.py with random weights after one untimed forward pass, as its end-to-end
column does; the network alone is timed in the same process just before and just after the run,
on a window of the same shape (e2e / model). While it runs, the threads of the process are sampled from /proc every 0.1 s:
- CPU s: the thread's time on a CPU (schedstat); *runnable, waiting s*: the time it was ready to run
  but every core was busy (the run queue's delay: oversubscription shows here);
- involuntary switches: how often the scheduler took its core away while it could still run.
Threads are grouped: the main thread and the OpenMP workers that existed before the run (the
network), the decoding thread, the threads started by its torch calls (an OpenMP team) or its RGB
conversion (swscale's), FFmpeg's decoding threads, and this script's sampler.
Stages: the network's forward passes (wall), the main thread's wait for windows, the decoding
thread's wait for room in the queue, and the decoding thread's own CPU time in RGB conversion and
in preprocessing (the rest of its CPU time is demuxing and driving FFmpeg).
"""
import argparse
import functools
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from benchmark import machine, make_video  # noqa: E402  (needs ROOT on the path)

SAMPLE_SECONDS = 0.1
GROUPS = ("network threads", "decoding thread", "threads it started", "FFmpeg threads", "sampler")


def thread_stats(tid: int) -> dict:
    """CPU and run-queue seconds (schedstat), switches (status), name (comm) of one thread."""
    base = f"/proc/self/task/{tid}"
    with open(f"{base}/schedstat") as file:
        cpu_ns, waiting_ns, _ = (int(value) for value in file.read().split())
    switches = {}
    with open(f"{base}/status") as file:
        for line in file:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                name, value = line.split(":")
                switches[name.split("_")[0]] = int(value)
    with open(f"{base}/comm") as file:
        name = file.read().strip()
    return {"cpu": cpu_ns / 1e9, "waiting": waiting_ns / 1e9, "involuntary": switches["nonvoluntary"],
            "voluntary": switches["voluntary"], "name": name}


class Sampler(threading.Thread):
    """Keeps the last figures of every thread of this process, including threads that have ended since."""

    def __init__(self):
        super().__init__(daemon=True)
        self.last: dict[int, dict] = {}
        self.stop = threading.Event()

    def run(self):
        self.tid = threading.get_native_id()
        while not self.stop.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self):
        for tid in map(int, os.listdir("/proc/self/task")):
            try:
                self.last[tid] = thread_stats(tid)
            except (FileNotFoundError, ProcessLookupError):
                pass  # ended between the listing and the read


def timed(seconds: dict, key: str, clock, function):
    """``function`` with its time on ``clock`` added to ``seconds[key]``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[key] = seconds.get(key, 0.0) + clock() - start

    return wrapper


class TimedQueue(queue.Queue):
    """The pipeline's message queue, timing how long get (the network's side) and put (the decoder's) block."""

    waited = {"get": 0.0, "put": 0.0}
    get = timed(waited, "get", time.perf_counter, queue.Queue.get)
    put = timed(waited, "put", time.perf_counter, queue.Queue.put)


def child(args) -> dict:
    """One end-to-end run, instrumented; returns its figures."""
    import benchmark
    import utils.decoder
    import utils.pipeline
    import utils.video

    options = argparse.Namespace(feature_type=args.feature_type, device="cpu", batch_size=1, precision="fp32",
                                 compile=False, crop_count=1, weights_path=None, model_name=None)
    extractor = benchmark.build(options, **dict(item.split("=", 1) for item in args.override))
    clips = benchmark.random_batch(extractor, 1)
    extractor.inference(clips)  # warm-up, as benchmark.py's end-to-end

    def seconds_per_forward() -> float:
        start, forwards = time.perf_counter(), 0
        while forwards < 3 or time.perf_counter() - start < args.model_seconds:
            extractor.inference(clips)
            forwards += 1
        return (time.perf_counter() - start) / forwards

    model_before = seconds_per_forward()  # the network alone, timed before and after the run: a VM drifts
    stages: dict[str, float] = {}
    decoder_tids = []
    utils.pipeline.queue = types.SimpleNamespace(Queue=TimedQueue, SimpleQueue=queue.SimpleQueue)
    utils.video._rgb = timed(stages, "rgb", time.thread_time, utils.video._rgb)
    utils.decoder._preprocessed = timed(stages, "preprocess", time.thread_time, utils.decoder._preprocessed)
    inference = extractor.pipeline.inference  # Python looks __call__ up on the class: give it a timed one
    inference.__class__ = type("TimedInference", (type(inference),),
                               {"__call__": timed(stages, "forward", time.perf_counter, type(inference).__call__)})
    decode_jobs = utils.pipeline.decode_jobs

    def recorded_decode_jobs(*job_args):
        decoder_tids.append(threading.get_native_id())
        decode_jobs(*job_args)

    utils.pipeline.decode_jobs = recorded_decode_jobs
    sampler = Sampler()
    sampler.sample()
    before = dict(sampler.last)
    sampler.start()
    start = time.perf_counter()
    (result,) = list(extractor.extract_many([args.video]))
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    stages = dict(stages)  # the run's alone, not the forward passes timed next
    model_seconds = (model_before + seconds_per_forward()) / 2
    if result.error:
        raise SystemExit(result.error)
    groups = {group: {"threads": 0, "cpu": 0.0, "waiting": 0.0, "involuntary": 0, "voluntary": 0} for group in GROUPS}
    for tid, stats in sampler.last.items():
        old = before.get(tid, {"cpu": 0.0, "waiting": 0.0, "involuntary": 0, "voluntary": 0})
        if tid == sampler.tid:
            group = "sampler"
        elif tid in before:
            group = "network threads"
        elif tid in decoder_tids:
            group = "decoding thread"
        elif stats["name"].startswith("av:"):
            group = "FFmpeg threads"
        else:
            group = "threads it started"
        figures = groups[group]
        figures["threads"] += 1
        for key in ("cpu", "waiting", "involuntary", "voluntary"):
            figures[key] += stats[key] - old[key]
    windows = len(result.outputs["timestamps_ms"])
    return {"seconds": seconds, "windows": windows, "model_seconds": model_seconds, "groups": groups, "stages": stages,
            "waited": TimedQueue.waited, "thread_names": sorted({s["name"] for s in sampler.last.values()})}


def run_child(args, feature_type: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", "--feature-type", feature_type,
               "--video", args.video, "--model-seconds", str(args.model_seconds), *[f"--override={item}" for item in args.override]]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(feature_type: str, runs: list[dict]) -> list[str]:
    """Medians over the rounds."""
    def median(get):
        return statistics.median(get(run) for run in runs)

    seconds = median(lambda run: run["seconds"])
    windows = runs[0]["windows"]
    model = median(lambda run: run["model_seconds"]) * windows
    lines = [f"**{feature_type}**: {windows} windows in {seconds:.1f} s ({windows / seconds:.2f} windows/s); "
             f"the network alone: {model:.1f} s for as many windows, in the same process, "
             f"timed before and after the run "
             f"(e2e / model {median(lambda run: run['model_seconds'] * windows / run['seconds']):.2f}); "
             f"medians of {len(runs)} rounds", "",
             "| threads | count | CPU s | runnable, waiting s | involuntary switches | voluntary switches |",
             "|---|---|---|---|---|---|"]
    for group in GROUPS:
        cells = [median(lambda run: run["groups"][group][key]) for key in ("threads", "cpu", "waiting", "involuntary", "voluntary")]
        lines.append(f"| {group} | {cells[0]:.0f} | {cells[1]:.1f} | {cells[2]:.1f} | {cells[3]:.0f} | {cells[4]:.0f} |")
    stage = lambda key: median(lambda run: run["stages"].get(key, 0.0))  # noqa: E731
    waited = lambda key: median(lambda run: run["waited"][key])  # noqa: E731
    lines += ["", "| stage | seconds |", "|---|---|",
              f"| network forward passes (wall) | {stage('forward'):.1f} |",
              f"| main thread waiting for windows (wall) | {waited('get'):.1f} |",
              f"| decoding thread waiting for queue room (wall) | {waited('put'):.1f} |",
              f"| decoding thread: RGB conversion (its CPU) | {stage('rgb'):.1f} |",
              f"| decoding thread: preprocessing (its CPU) | {stage('preprocess'):.1f} |", ""]
    return lines


def summary(runs: dict[str, list[dict]]) -> list[str]:
    """One row per feature type: where the CPU went, medians over the rounds."""
    lines = ["| feature_type | windows | end-to-end s | network alone s | e2e / model | network CPU s "
             "| decoding CPU s | of which FFmpeg | of which preprocessing | network waited for windows s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for feature_type, rounds in runs.items():
        def median(get):
            return statistics.median(get(run) for run in rounds)

        windows = rounds[0]["windows"]
        decoding = median(lambda run: sum(run["groups"][group]["cpu"] for group in GROUPS[1:4]))
        lines.append(
            f"| {feature_type} | {windows} | {median(lambda run: run['seconds']):.1f} "
            f"| {median(lambda run: run['model_seconds']) * windows:.1f} "
            f"| {median(lambda run: run['model_seconds'] * windows / run['seconds']):.2f} "
            f"| {median(lambda run: run['groups'][GROUPS[0]]['cpu']):.1f} | {decoding:.1f} "
            f"| {median(lambda run: run['groups']['FFmpeg threads']['cpu']):.1f} "
            f"| {median(lambda run: run['stages'].get('preprocess', 0.0)):.1f} "
            f"| {median(lambda run: run['waited']['get']):.1f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feature-types", nargs="+", default=["r21d", "slowfast", "timesformer"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=60, help="length of the 720p test video")
    parser.add_argument("--model-seconds", type=float, default=10,
                        help="time the network alone this long before and after the run")
    parser.add_argument("--override", action="append", default=[], help="an extractor option, key=value")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--feature-type", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    args.video = make_video(args.seconds)
    runs = {feature_type: [] for feature_type in args.feature_types}
    for _ in range(args.rounds):
        for feature_type in args.feature_types:
            runs[feature_type].append(run_child(args, feature_type))
    print(f"Machine: {machine()}; video {os.path.basename(args.video)}; options {' '.join(args.override) or 'default'}\n")
    print("\n".join(summary(runs)))
    for feature_type in args.feature_types:
        print("\n".join(table(feature_type, runs[feature_type])))


if __name__ == "__main__":
    main()
