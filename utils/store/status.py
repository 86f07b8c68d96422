"""status=true: for the feature type, model and settings of its command line, which videos are done,
by the rule a run skips them by: every output loads and the settings record beside them equals the
run's (utils/store/outputs.py). The run logs add which failed and how many processes ran.

The videos: those the command line lists, or else every video a run log under output_path names.
"""
import os
from collections import Counter

from video_features.utils.errors import OutputError
from video_features.utils.options import Options
from video_features.utils.recipe import Recipe
from video_features.utils.run.inputs import video_paths
from video_features.utils.store.names import output_names
from video_features.utils.store.outputs import OutputState, OutputStore
from video_features.utils.store.runlog import RUNS_FOLDER, read_records

OTHER_SETTINGS = "done with other settings"


def status_report(options: Options, recipe: Recipe) -> tuple[str, bool]:
    """The report's lines, and whether every video is done."""
    records = read_records(options.output_path)
    starts = [record for record in records if record["event"] == "start"]
    listed = options.video_paths is not None or options.file_with_video_paths is not None
    if not listed and not starts:
        logs = os.path.join(options.output_path, RUNS_FOLDER)
        return f"no run found under {options.output_path}: no run log in {logs}", False
    logged = dict.fromkeys(record["path"] for record in records if record["event"] == "video")
    videos = video_paths(options) if listed else list(logged)
    names = output_names(videos, options.input_root)
    output_dir = recipe.output_dir(options.output_path)
    # outputs saved as either format count where the command line does not say which (print)
    formats = [options.on_extraction.value] if options.saving else ["save_numpy", "save_pickle"]
    stores = [OutputStore(output_dir, each) for each in formats]
    settings = recipe.settings()

    default_model = recipe.family.checkpoint(None).name
    logs = {record["log"] for record in starts if record["config"]["feature_type"] == recipe.feature_type
            and (record["config"]["model_name"] or default_model) == recipe.model_name}
    latest = {record["path"]: record for record in records if record["event"] == "video" and record["log"] in logs}

    outcomes, lines = Counter(), []
    for video in videos:
        try:
            found = {store.state(names[video], recipe.output_keys, settings) for store in stores}
        except OutputError as error:
            found = set()
            lines.append(f"cannot check: {video}: {error}")
        logged = latest.get(os.path.abspath(video), {})
        if OutputState.DONE in found:
            outcomes["done"] += 1
        elif OutputState.STALE in found:
            outcomes[OTHER_SETTINGS] += 1
        elif logged.get("status") == "failed":
            outcomes["failed"] += 1
            lines.append(f"failed: {os.path.abspath(video)}: {logged['error']}")
        else:
            outcomes["not done"] += 1

    finished = outcomes["done"] == len(videos)
    ended = {record["log"] for record in records if record["event"] == "end"}
    processes = {record["log"] for record in starts}
    runs = (f"{len(processes)} processes, {len(processes - ended)} without an end record: running or killed"
            if processes else f"no run log in {os.path.join(options.output_path, RUNS_FOLDER)}")
    counts = ", ".join(f"{outcomes[outcome]} {outcome}" for outcome in ("done", OTHER_SETTINGS, "failed", "not done")
                       if outcomes[outcome] or outcome != OTHER_SETTINGS)
    head = f"all {len(videos)} videos done" if finished else f"{counts} of {len(videos)} videos"
    return "\n".join([f"{head} ({recipe.feature_type}/{recipe.model_name}; {runs})", *lines]), finished
