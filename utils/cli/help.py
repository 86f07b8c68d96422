"""--help: every option with its meaning and its value now, then the models (Hydra's help template
calls ``help_text`` through the ``extractor_help`` resolver of configs/config.yaml)."""
from omegaconf import DictConfig, OmegaConf

from video_features.models.registry import families
from video_features.utils.options import OPTIONS


def help_text(cfg: DictConfig) -> str:
    lines = [
        "Extracts per-window video features with R(2+1)D, SlowFast or TimeSformer.",
        "",
        "usage: python main.py [option=value ...]        (Hydra's override syntax)",
        "       python main.py -m option=a,b ...          (a sweep: one job per value)",
        "  e.g. python main.py feature_type=r21d video_paths=[./sample/a.mp4] on_extraction=save_numpy",
        "  quote values with spaces, commas or '=': 'video_paths=[\"my clip.mp4\"]', or use file_with_video_paths",
        "",
        "Options (value now in brackets):",
    ]
    width = max(map(len, OPTIONS))
    for key, meaning in OPTIONS.items():
        value = OmegaConf.to_yaml({key: cfg[key]}).split(":", 1)[1].strip()
        lines.append(f"  {key:<{width}}  {meaning} [{value}]")
    lines += ["", "Models (the first is the default):"]
    for feature_type, family in families().items():
        lines.append(f"  {feature_type}: {', '.join(c.name for c in family.checkpoints)}")
    lines += ["", "Hydra's own flags: python main.py --hydra-help; the resolved config: python main.py --cfg job"]
    return "\n".join(lines)


OmegaConf.register_new_resolver("extractor_help", lambda *, _root_: help_text(_root_), replace=True)
