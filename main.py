"""Command line: python main.py feature_type=r21d video_paths=[./sample/a.mp4] (Hydra overrides).

A Hydra application: ``-m`` sweeps (one job per combination, through any Hydra launcher),
``--cfg job`` prints the resolved config (the model's defaults filled in), ``--help`` the options.
Exit codes: 0 every video extracted or skipped, 1 some video failed or the device failed (in a
multirun: some job), 2 bad options or weights, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM:
Slurm at a time limit or on scancel, kill), 129 hung up (SIGHUP: the terminal or ssh connection
closed), 141 the reader of the printed features went away (``on_extraction=print | head``).
The work is done by the installed package video_features (utils/cli/app.py).
"""
import os
import sys

if __name__ == "__main__":
    # The repository's folders are the package video_features; as top-level names (this folder is
    # on sys.path while main.py runs) they would shadow a user's own `utils` or `models`.
    if os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    try:
        from video_features.utils.cli.signals import stop_while_starting_on_signals
    except ModuleNotFoundError as error:
        if error.name != "video_features":
            raise
        sys.exit("error: the package video_features is not installed: run ./setup.sh (or pip install -e .)")
    stop_while_starting_on_signals()  # before the imports of the run, which take seconds
    from video_features.utils.cli.app import main

    sys.exit(main())
