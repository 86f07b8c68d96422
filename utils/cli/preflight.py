"""What the command line checks before Hydra starts: the overrides (one line, exit 2, where Hydra's
own report spans many lines and a sweep would start every job), the files they name, the weights a
sweep's jobs will load (found or downloaded once), and what ``--cfg job`` prints."""
import copy
import math

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from video_features.utils.cli.hydra_config import load_config, to_options
from video_features.utils.errors import SettingsError
from video_features.utils.network.weights import check_weights_path, resolve_checkpoint
from video_features.utils.options import Options, one_line
from video_features.utils.recipe import model_of, window_of
from video_features.utils.run.inputs import check_files

QUOTING_HINT = (
    "quote a value with spaces, commas, '=' or non-ASCII letters, e.g. 'video_paths=[\"my clip.mp4\"]', "
    "or list the videos in file_with_video_paths"
)
# Hydra's flags after which nothing runs, so no list or weights file is needed
NOTHING_RUNS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--version"}


def overrides_of(argv: list[str]) -> list[str]:
    return [word for word in argv if not word.startswith("-") and ("=" in word or word.startswith("~"))]


def check_command_line(argv: list[str]) -> int:
    """Bad overrides, a missing list file or weights file, as a SettingsError or WeightsError before
    Hydra starts; returns the number of jobs a sweep of these overrides runs."""
    parsed = _parsed(overrides_of(argv))
    configs = _configs_of_sweep(parsed)
    if NOTHING_RUNS.intersection(word.split("=")[0] for word in argv):
        return 1
    sweep = bool({"-m", "--multirun"}.intersection(argv))
    for options in configs:
        window_of(options, model_of(options)[1])
        check_files(options)
        check_weights_path(options.weights_path)
        if sweep and (options.pretrained or options.weights_path):
            fetch_weights(options)
    return math.prod(len(list(o.sweep_string_iterator())) for o in parsed if o.is_sweep_override())


def _parsed(overrides: list[str]) -> list[Override]:
    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(overrides)
    except OverrideParseException:  # its text is the parser's (ANTLR's): name the option instead
        unreadable = next(word for word in overrides if not _parses(parser, word))
        raise SettingsError(f"{unreadable}: Hydra cannot read this value; {QUOTING_HINT}") from None


def _parses(parser: OverridesParser, word: str) -> bool:
    try:
        parser.parse_overrides([word])
    except OverrideParseException:
        return False
    return True


def _configs_of_sweep(parsed: list[Override]) -> list[Options]:
    """The options of every value a sweep sets, checked. The config is composed once with each
    sweep's first value; the other values of a sweep (a choice list or a range) are set into a copy
    of it, and each feature_type of a sweep is composed, since choosing another one changes the config."""
    first = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override()
             else o.input_line for o in parsed]
    cfg = load_config(first)
    configs = [to_options(cfg)]
    for index, override in enumerate(parsed):
        key = override.get_key_element().lstrip("+~")
        if not override.is_sweep_override() or key.startswith(("hydra.", "hydra/")):
            continue
        for spelled, value in list(zip(override.sweep_string_iterator(), override.sweep_iterator()))[1:]:
            if key == "feature_type":
                configs.append(to_options(load_config(first[:index] + [f"feature_type={spelled}"] + first[index + 1:])))
            else:
                configs.append(_with_sweep_value(cfg, key, value))
    return configs


def _with_sweep_value(cfg: DictConfig, key: str, value) -> Options:
    """The options of ``cfg`` with one value of a sweep (as Hydra parsed it), checked."""
    swept = copy.deepcopy(cfg)
    try:
        OmegaConf.update(swept, key, value, merge=False)
    except OmegaConfBaseException as error:
        raise SettingsError(one_line(error)) from None
    return to_options(swept)


def fetch_weights(options: Options) -> None:
    """The weights a sweep's jobs will load, found or downloaded here, once: offline, one line and
    exit 2 before any job starts, not one error per job (they then find the file in the cache)."""
    _, checkpoint = model_of(options)
    resolve_checkpoint(checkpoint.url, options.weights_path, options.pretrained, checkpoint.sha256_prefix)


def resolved_job_config(argv: list[str]) -> str:
    """What ``--cfg job`` prints: the config of these overrides with what null stands for filled in
    (the model's name, stack and step; tmp_path), where Hydra would print null."""
    cfg = load_config([word for word in argv if not word.startswith("-") and word != "job"])
    options = to_options(cfg)
    _, checkpoint = model_of(options)
    cfg.model_name = checkpoint.name
    cfg.stack_size, cfg.step_size = window_of(options, checkpoint)
    cfg.tmp_path = options.tmp_folder
    return OmegaConf.to_yaml(cfg)
