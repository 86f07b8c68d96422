"""The command line (main.py): Hydra's config turned into ``Options`` at this edge, and exit codes."""
