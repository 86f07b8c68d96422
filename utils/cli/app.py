"""The command line's jobs: Hydra's config turned into ``Options`` once, a run, its one summary line
and its exit code (see main.py for the codes). Library errors become one line here, and only here."""
import importlib
import signal
import sys
import warnings
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from video_features.utils.cli import help  # noqa: F401  (registers --help's resolver)
from video_features.utils.cli.hydra_config import CONFIG_DIR, to_options
from video_features.utils.cli.preflight import check_command_line, resolved_job_config
from video_features.utils.cli.signals import STOPPED, signals_stop_the_run
from video_features.utils.console import drop_output, say
from video_features.utils.errors import DeviceError, OutputNameClash, SettingsError, WeightsError
from video_features.utils.machine import MachineShare, share_of_sweep_job
from video_features.utils.options import Options
from video_features.utils.run.exit_codes import EXIT_BAD_OPTIONS, EXIT_DONE, EXIT_FAILED, EXIT_READER_GONE


class JobFailed(CompactHydraException):
    """A multirun job whose run did not end with exit code 0 (Hydra prints this one line)."""


def _show_warning(message, category, filename, lineno, file=None, line=None):
    say(f"warning: {message}")  # on its own line, not glued to a progress bar


def run_job(cfg: DictConfig, share: Optional[MachineShare] = None) -> int:
    """One job: the run of one configuration; returns its exit code. Ctrl-C (SIGTERM, SIGHUP) ends
    the process with one line and exit code 130 (143, 129); a sweep's other jobs do not start. The
    run is closed before the line is written: a line to a pipe whose reader has gone (Ctrl-C reaches
    `| tee` too) must not skip giving up the claims and writing the end record."""
    run = None
    try:
        options = to_options(cfg)
        if options.status:
            return print_status(options)
        from video_features.utils.run.run import Run  # torch, PyAV: once the options are known to be good

        run = Run(options, share=share)
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


def print_status(options: Options) -> int:
    """status=true: which videos a run of this command line would skip, as done (utils/store/status.py);
    exit 0 when every one is."""
    from video_features.utils.store.status import status_report

    report, finished = status_report(options)
    print(report)
    return EXIT_DONE if finished else EXIT_FAILED


class Job:
    """Hydra's task function: runs one job of the command line. An object rather than a function,
    so that the number of jobs of its sweep travels with it to the processes a launcher runs jobs in
    (Hydra tells a job its number, not how many there are)."""

    def __init__(self, sweep_jobs: int):
        self.sweep_jobs = sweep_jobs

    def __call__(self, cfg: DictConfig) -> None:
        warnings.showwarning = _show_warning  # also in a launcher's worker process
        hydra_config = HydraConfig.get()
        multirun = hydra_config.mode == RunMode.MULTIRUN
        share = None
        if multirun:  # the jobs its launcher runs on this machine at once share its GPUs and cores
            say(f"job {hydra_config.job.num}: {' '.join(hydra_config.overrides.task)}")
            launcher = OmegaConf.to_container(hydra_config.launcher, resolve=True)
            share = share_of_sweep_job(hydra_config.job.num, launcher, self.sweep_jobs)
        # torch and PyAV load (seconds) while a signal still ends the process at once: raised inside
        # their imports, it could break them (utils/cli/signals.py)
        importlib.import_module("video_features.utils.run.run")
        # each job warns afresh (a sweep's jobs may share a process, where Python shows a warning once)
        with signals_stop_the_run(), warnings.catch_warnings():
            code = run_job(cfg, share)
        if code and multirun:
            raise JobFailed(f"job {hydra_config.job.num} ended with exit code {code}")
        if code:
            raise SystemExit(code)


def main() -> int:
    """Runs the command line of this process (sys.argv); returns its exit code."""
    argv = sys.argv[1:]
    try:
        if any(argv[i:i + 2] in (["--cfg", "job"], ["-c", "job"]) for i in range(len(argv))):
            print(resolved_job_config(argv), end="")
            return EXIT_DONE
        sweep_jobs = check_command_line(argv)
    except (SettingsError, WeightsError) as error:
        say(f"error: {error}")
        return EXIT_BAD_OPTIONS
    app = hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")(Job(sweep_jobs))
    try:
        app()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_FAILED
    return EXIT_DONE
