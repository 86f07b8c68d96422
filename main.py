"""Command line: python main.py feature_type=r21d video_paths=[./sample/a.mp4] (Hydra overrides).

Exit codes: 0 all videos extracted or skipped, 1 some video failed, 2 bad options or weights.
"""
import sys
import warnings

from models import EXTRACTORS, build_extractor, extractor_class
from utils.config import ConfigError, help_text, load_config, video_paths
from utils.output import OutputNameClash
from utils.weights import WeightsError


def _warning_line(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        models = {name: list(extractor_class(name).models) for name in EXTRACTORS}
        print(help_text(models))
        return 0
    warnings.formatwarning = _warning_line
    try:
        cfg = load_config(argv)
        paths = video_paths(cfg)
        extractor = build_extractor(cfg)
        summary = extractor.run(paths)
    except (ConfigError, OutputNameClash, WeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{summary.extracted} extracted, {summary.skipped} skipped, {summary.failed} failed", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
