"""Command line: python main.py feature_type=r21d video_paths=[./sample/a.mp4] (Hydra overrides).

A Hydra application: ``-m`` sweeps (one job per combination, through any Hydra launcher),
``--cfg job`` prints the resolved config, ``--help`` the options. Exit codes: 0 every video
extracted or skipped, 1 some video failed or the device failed (in a multirun: some job), 2 bad
options or weights, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM: Slurm at a time limit or on
scancel, kill).
"""
import contextlib
import copy
import math
import os
import signal
import sys
import threading
import warnings
from typing import Optional

STOPPED = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}


def _stop_while_no_video_is_read(signum, frame):
    """Ctrl-C or SIGTERM outside a job: while the imports below load (seconds: torch, PyAV, Hydra),
    the options are checked, or between a sweep's jobs. Nothing is being written, so the process
    ends at once with one line (the shell's code: 128 + the signal's number), no traceback."""
    print(f"{STOPPED[signum]}: no video was in progress", file=sys.stderr)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    for _number in STOPPED:
        if signal.getsignal(_number) is not signal.SIG_IGN:  # a background job's Ctrl-C stays ignored
            signal.signal(_number, _stop_while_no_video_is_read)

import hydra  # noqa: E402  (after the handlers above: these imports take seconds)
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from utils.config import CONFIG_DIR, check_config, check_files, load_config, one_line, video_paths
from utils.errors import DeviceError, OutputNameClash, SettingsError, WeightsError
from utils.machine import SWEEP_JOBS_VARIABLE, MachineShare, share_of_sweep_job
from utils.network.weights import check_weights_path
from utils.run import EXIT_BAD_OPTIONS, EXIT_DONE, EXIT_FAILED, Run
from utils.store.runlog import status_report

QUOTING_HINT = (
    "quote a value with spaces, commas, '=' or non-ASCII letters, e.g. 'video_paths=[\"my clip.mp4\"]', "
    "or list the videos in file_with_video_paths"
)


class JobFailed(CompactHydraException):
    """A multirun job whose run did not end with exit code 0 (Hydra prints this one line)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that it stops a run the same way."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def signals_stop_the_run():
    """While a job runs, Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated, so that either
    stops it cleanly (claims given up, an end record); the handlers before are restored after.
    Here rather than in main(), since a launcher may run jobs in processes of its own."""
    if threading.current_thread() is not threading.main_thread():  # where signals do not reach
        yield
        return
    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_terminated}
    previous = {number: signal.getsignal(number) for number in handlers}
    for number, handler in handlers.items():
        if previous[number] is not signal.SIG_IGN:
            signal.signal(number, handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    tqdm.write(f"warning: {message}", file=sys.stderr)  # on its own line, not glued to a progress bar


def run_job(cfg: DictConfig, share: Optional[MachineShare] = None) -> int:
    """One job: the run of one configuration; returns its exit code. Ctrl-C (SIGTERM) ends the
    process with one line and exit code 130 (143); a sweep's other jobs do not start."""
    run = None
    try:
        check_config(cfg)
        if cfg.status:
            return print_status(cfg)
        run = Run(cfg, share=share)
        summary = run()
    except (SettingsError, OutputNameClash, WeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    except DeviceError as error:  # every other video would fail the same way: stop
        done = f" after {run.summary}" if run is not None else ""
        print(f"error: {error}; the run stopped{done} (videos in progress were not saved)", file=sys.stderr)
        if run is not None:
            run.close(EXIT_FAILED)
        return EXIT_FAILED
    except KeyboardInterrupt as interrupt:
        number = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        if run is None:  # options, weights: nothing written yet
            print(f"{STOPPED[number]}: no video was in progress", file=sys.stderr)
        else:
            print(f"{STOPPED[number]}: {run.summary}; videos in progress were not saved "
                  "(run the same command again to finish)", file=sys.stderr)
            run.close(128 + number)
        raise SystemExit(128 + number) from None
    run.close(summary.exit_code)
    print(summary, file=sys.stderr)
    return summary.exit_code


def print_status(cfg: DictConfig) -> int:
    """status=true: what the run logs under output_path say; exit 0 when every listed video is done."""
    listed = video_paths(cfg) if cfg.video_paths is not None or cfg.file_with_video_paths is not None else None
    report, finished = status_report(cfg.output_path, listed)
    print(report)
    return EXIT_DONE if finished else EXIT_FAILED


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    warnings.showwarning = _show_warning  # also in a launcher's worker process
    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    if multirun:
        print(f"job {hydra_config.job.num}: {' '.join(hydra_config.overrides.task)}", file=sys.stderr)
    share = None
    if multirun:  # the jobs its launcher runs on this machine at once share its GPUs and cores
        launcher = OmegaConf.to_container(hydra_config.launcher, resolve=True)
        share = share_of_sweep_job(hydra_config.job.num, launcher, int(os.environ.get(SWEEP_JOBS_VARIABLE, "1")))
    with signals_stop_the_run():
        code = run_job(cfg, share)
    if code and multirun:
        raise JobFailed(f"job {hydra_config.job.num} ended with exit code {code}")
    if code:
        raise SystemExit(code)


# Hydra's flags after which nothing runs, so no list or weights file is needed
NOTHING_RUNS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--version"}


def check_overrides(argv: list[str]) -> int:
    """Bad overrides, a missing list file or weights file, as one line before Hydra starts (Hydra's
    own report spans many lines and exits 1; a sweep would start every job); returns the number of
    jobs a sweep of these overrides runs. The config is composed
    once with each sweep's first value; the other values of a sweep (a choice list or a range) are
    set into a copy of it and checked there, and each feature_type of a sweep is composed, since
    choosing another one changes the config."""
    overrides = [word for word in argv if not word.startswith("-") and ("=" in word or word.startswith("~"))]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        raise SettingsError(f"{str(error).splitlines()[0]}; {QUOTING_HINT}") from None
    first = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
             for o in parsed]
    cfg = load_config(first)
    configs = [cfg]
    for index, override in enumerate(parsed):
        key = override.get_key_element().lstrip("+~")
        if not override.is_sweep_override() or key.startswith(("hydra.", "hydra/")):
            continue
        for spelled, value in list(zip(override.sweep_string_iterator(), override.sweep_iterator()))[1:]:
            if key == "feature_type":
                configs.append(load_config(first[:index] + [f"feature_type={spelled}"] + first[index + 1:]))
            else:
                configs.append(with_sweep_value(cfg, key, value))
    if NOTHING_RUNS.intersection(word.split("=")[0] for word in argv):
        return 1
    for each in configs:
        check_files(each)
        check_weights_path(each.weights_path)
    return math.prod(len(list(o.sweep_string_iterator())) for o in parsed if o.is_sweep_override())


def with_sweep_value(cfg: DictConfig, key: str, value) -> DictConfig:
    """A copy of ``cfg`` with one value of a sweep (as Hydra parsed it), checked."""
    swept = copy.deepcopy(cfg)
    try:
        OmegaConf.update(swept, key, value, merge=False)
    except OmegaConfBaseException as error:
        raise SettingsError(one_line(error)) from None
    check_config(swept)
    return swept


def main(argv: list[str]) -> int:
    """Runs the command line; returns its exit code. Every outcome ends as SystemExit: a job's
    code (app), Hydra's own exit 1 for a failed sweep job, or a signal's 130 / 143."""
    try:
        os.environ[SWEEP_JOBS_VARIABLE] = str(check_overrides(argv))  # the jobs inherit it
    except (SettingsError, WeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_OPTIONS
    sys.argv = [sys.argv[0], *argv]
    try:
        app()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_FAILED
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
