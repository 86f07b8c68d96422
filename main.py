"""Command line: python main.py feature_type=r21d video_paths=[./sample/a.mp4] (Hydra overrides).

A Hydra application: ``-m`` sweeps (one job per combination, through any Hydra launcher),
``--cfg job`` prints the resolved config (the model's defaults filled in), ``--help`` the options.
Exit codes: 0 every video extracted or skipped, 1 some video failed or the device failed (in a
multirun: some job), 2 bad options or weights, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM:
Slurm at a time limit or on scancel, kill), 129 hung up (SIGHUP: the terminal or ssh connection
closed), 141 the reader of the printed features went away (``on_extraction=print | head``).
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

# The signals that stop a run cleanly: claims given up, an end record, one line, 128 + the number
STOPPED = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)",
           signal.SIGHUP: "hung up (SIGHUP: the terminal closed)"}


def _stop_while_no_video_is_read(signum, frame):
    """Ctrl-C, SIGTERM or SIGHUP outside a job: while the imports below load (seconds: torch, PyAV,
    Hydra), the options are checked, or between a sweep's jobs. Nothing is being written, so the
    process ends at once with one line (the shell's code: 128 + the signal's number), no traceback.

    It ends without raising: an exception raised here may land inside an extension module's
    initialisation (numpy's, torch's), which can turn it into an ImportError with a traceback, or,
    in C++ code that may not throw, into abort() (exit 134)."""
    try:
        print(f"{STOPPED[signum]}: no video was in progress", file=sys.stderr, flush=True)
    except OSError:  # nobody reads stderr any more (a closed pipe or terminal)
        pass
    os._exit(128 + signum)


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

from utils.console import drop_output, say
from utils.config import CONFIG_DIR, check_config, check_files, load_config, one_line
from utils.errors import DeviceError, OutputNameClash, SettingsError, WeightsError
from utils.machine import SWEEP_JOBS_VARIABLE, MachineShare, share_of_sweep_job
from utils.network.weights import check_weights_path, resolve_checkpoint
from utils.recipe import model_and_windows, recipe_of_run
from utils.run import EXIT_BAD_OPTIONS, EXIT_DONE, EXIT_FAILED, EXIT_READER_GONE, Run
from utils.store.status import status_report

QUOTING_HINT = (
    "quote a value with spaces, commas, '=' or non-ASCII letters, e.g. 'video_paths=[\"my clip.mp4\"]', "
    "or list the videos in file_with_video_paths"
)


class JobFailed(CompactHydraException):
    """A multirun job whose run did not end with exit code 0 (Hydra prints this one line)."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that it stops a run the same way."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@contextlib.contextmanager
def signals_stop_the_run():
    """While a job runs, Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP Stopped, so that each
    stops it cleanly (claims given up, an end record); the handlers before are restored after (one
    ignored, as nohup ignores SIGHUP, stays ignored). Here rather than in main(), since a launcher
    may run jobs in processes of its own."""
    if threading.current_thread() is not threading.main_thread():  # where signals do not reach
        yield
        return
    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_stopped,
                signal.SIGHUP: _raise_stopped}
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
    say(f"warning: {message}")  # on its own line, not glued to a progress bar


def run_job(cfg: DictConfig, share: Optional[MachineShare] = None) -> int:
    """One job: the run of one configuration; returns its exit code. Ctrl-C (SIGTERM, SIGHUP) ends
    the process with one line and exit code 130 (143, 129); a sweep's other jobs do not start. The
    run is closed before the line is written: a line to a pipe whose reader has gone (Ctrl-C reaches
    `| tee` too) must not skip giving up the claims and writing the end record."""
    run = None
    try:
        check_config(cfg)
        if cfg.status:
            return print_status(cfg)
        run = Run(cfg, share=share)
        summary = run()
    except (SettingsError, OutputNameClash, WeightsError) as error:
        say(f"error: {error}")
        return EXIT_BAD_OPTIONS
    except DeviceError as error:  # every other video would fail the same way: stop
        done = f" after {run.summary}" if run is not None else ""
        if run is not None:
            run.close(EXIT_FAILED)
        say(f"error: {error}; the run stopped{done} (videos in progress were not saved)")
        return EXIT_FAILED
    except KeyboardInterrupt as interrupt:
        number = getattr(interrupt, "signum", signal.SIGINT)
        if run is None:  # options, weights: nothing written yet
            say(f"{STOPPED[number]}: no video was in progress")
        else:
            run.close(128 + number)
            say(f"{STOPPED[number]}: {run.summary}; videos in progress were not saved "
                "(run the same command again to finish)")
        raise SystemExit(128 + number) from None
    except BrokenPipeError:  # the printed features' reader has gone: nobody gets the rest
        drop_output(sys.stdout)
        if run is not None:
            run.close(EXIT_READER_GONE)
            say(f"stopped: the reader of the printed features went away; {run.summary}")
        return EXIT_READER_GONE
    run.close(summary.exit_code)
    say(str(summary))
    return summary.exit_code


def print_status(cfg: DictConfig) -> int:
    """status=true: which videos a run of this command line would skip, as done (utils/store/status.py);
    exit 0 when every one is."""
    report, finished = status_report(cfg, recipe_of_run(cfg))
    print(report)
    return EXIT_DONE if finished else EXIT_FAILED


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    warnings.showwarning = _show_warning  # also in a launcher's worker process
    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    if multirun:
        say(f"job {hydra_config.job.num}: {' '.join(hydra_config.overrides.task)}")
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
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except OverrideParseException:  # its text is the parser's (ANTLR's): name the option instead
        unreadable = next(word for word in overrides if not _parses(parser, word))
        raise SettingsError(f"{unreadable}: Hydra cannot read this value; {QUOTING_HINT}") from None
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
    sweep = bool({"-m", "--multirun"}.intersection(argv))
    for each in configs:
        check_files(each)
        check_weights_path(each.weights_path)
        if sweep and (each.pretrained or each.weights_path):
            fetch_weights(each)
    return math.prod(len(list(o.sweep_string_iterator())) for o in parsed if o.is_sweep_override())


def _parses(parser: OverridesParser, word: str) -> bool:
    try:
        parser.parse_overrides([word])
    except OverrideParseException:
        return False
    return True


def fetch_weights(cfg: DictConfig) -> None:
    """The weights a sweep's jobs will load, found or downloaded here, once: offline, one line and
    exit 2 before any job starts, not one error per job (they then find the file in the cache)."""
    _, checkpoint, _ = model_and_windows(cfg)
    resolve_checkpoint(checkpoint.url, cfg.weights_path, cfg.pretrained, checkpoint.sha256_prefix)


def with_sweep_value(cfg: DictConfig, key: str, value) -> DictConfig:
    """A copy of ``cfg`` with one value of a sweep (as Hydra parsed it), checked."""
    swept = copy.deepcopy(cfg)
    try:
        OmegaConf.update(swept, key, value, merge=False)
    except OmegaConfBaseException as error:
        raise SettingsError(one_line(error)) from None
    check_config(swept)
    return swept


def resolved_job_config(argv: list[str]) -> str:
    """What ``--cfg job`` prints: the config of these overrides with what null stands for filled in
    (the model's name, stack and step; tmp_path), where Hydra would print null."""
    cfg = load_config([word for word in argv if not word.startswith("-") and word != "job"])
    _, checkpoint, plan = model_and_windows(cfg)
    cfg.model_name, cfg.stack_size, cfg.step_size = checkpoint.name, plan.stack, plan.step
    cfg.tmp_path = cfg.tmp_path or os.path.join(cfg.output_path, ".tmp")
    return OmegaConf.to_yaml(cfg)


def main(argv: list[str]) -> int:
    """Runs the command line; returns its exit code. Every outcome ends as SystemExit: a job's
    code (app), Hydra's own exit 1 for a failed sweep job, or a signal's 130 / 143."""
    try:
        if any(argv[i:i + 2] in (["--cfg", "job"], ["-c", "job"]) for i in range(len(argv))):
            print(resolved_job_config(argv), end="")
            return EXIT_DONE
        os.environ[SWEEP_JOBS_VARIABLE] = str(check_overrides(argv))  # the jobs inherit it
    except (SettingsError, WeightsError) as error:
        say(f"error: {error}")
        return EXIT_BAD_OPTIONS
    sys.argv = [sys.argv[0], *argv]
    try:
        app()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_FAILED
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
