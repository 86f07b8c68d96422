"""status=true: for the feature type, model and settings of its command line, which videos are done,
by the rule a run skips them by: every output loads and the settings record beside them equals the
run's (utils/store/outputs.py). The run logs of those settings add which failed and how many
processes ran.

The videos: those the command line lists, or else every video a run log under output_path names.
"""
import os
from collections import Counter
from typing import Callable, Optional

from video_features.models.registry import Family
from video_features.utils.errors import OutputError, WeightsError
from video_features.utils.options import OnExtraction, Options
from video_features.utils.recipe import model_of, recipe_of_run
from video_features.utils.run.inputs import video_paths
from video_features.utils.store.names import output_names
from video_features.utils.store.outputs import OutputState, OutputStore
from video_features.utils.store.runlog import RUNS_FOLDER, read_records
from video_features.utils.store.shard_index import ShardIndex
from video_features.utils.video.remote import canonical, redact

OTHER_SETTINGS = "done with other settings"
OUTCOMES = ("done", OTHER_SETTINGS, "failed", "not done")


def status_report(options: Options) -> tuple[str, bool]:
    """The report's lines, and whether every video is done."""
    family, checkpoint = model_of(options)
    note, settings = None, None
    try:
        settings = recipe_of_run(options).settings()
    except WeightsError as error:  # none can be done with weights that are not here: count the others
        note = f"note: {error}"
    records = read_records(options.output_path)
    logs = _logs_of(records, family, checkpoint.name, settings)
    listed = options.video_paths is not None or options.file_with_video_paths is not None
    if not listed and not any(record["event"] == "start" for record in records):
        return f"no run found under {options.output_path}: no run log in {_runs(options)}", False
    logged = dict.fromkeys(record["path"] for record in records if record["event"] == "video")
    videos = video_paths(options) if listed else list(logged)
    outcomes, lines = _outcomes(options, family.feature_type, checkpoint.name, videos, settings, records, logs)
    finished = outcomes["done"] == len(videos)
    ended = {record["log"] for record in records if record["event"] == "end"}
    runs = (f"{len(logs)} processes, {len(logs - ended)} without an end record: running or killed" if logs
            else "no run of these settings logged")
    counts = ", ".join(f"{outcomes[outcome]} {outcome}" for outcome in OUTCOMES
                       if outcomes[outcome] or outcome != OTHER_SETTINGS)
    head = f"all {len(videos)} videos done" if finished else f"{counts} of {len(videos)} videos"
    head = f"{head} ({family.feature_type}/{checkpoint.name}; {runs})"
    return "\n".join([head, *([note] if note else []), *lines]), finished


def _runs(options: Options) -> str:
    return os.path.join(options.output_path, RUNS_FOLDER)


def _logs_of(records: list[dict], family: Family, model_name: str, settings: Optional[dict]) -> set[str]:
    """The run logs of processes that ran with these settings (logs of earlier versions, which kept
    no settings, by their feature type and model)."""
    logs = set()
    for record in records:
        if record["event"] != "start":
            continue
        config = record["config"]
        if "settings" in record:
            ours = record["settings"] == settings
        else:
            ours = (config["feature_type"], config["model_name"] or family.default.name) == (family.feature_type,
                                                                                            model_name)
        if ours:
            logs.add(record["log"])
    return logs


def _outcomes(options: Options, feature_type: str, model_name: str, videos: list[str], settings: Optional[dict],
              records: list[dict], logs: set[str]) -> tuple[Counter, list[str]]:
    names = output_names(videos, options.input_root)
    output_dir = os.path.join(options.output_path, feature_type, model_name)
    checks = _checks(options, output_dir, [feature_type, "timestamps_ms", "fps"], settings)
    # a video's last word in those logs: extracted or failed (a later claim or skip by another
    # process says nothing of how it ended)
    last = {record["path"]: record for record in records if record["event"] == "video" and record["log"] in logs
            and record["status"] in ("extracted", "failed")}
    outcomes, lines = Counter(), []
    for video in videos:
        try:
            found = {check(names[video]) for check in checks}
        except OutputError as error:
            found = set()
            lines.append(f"cannot check: {redact(video)}: {error}")
        if OutputState.DONE in found:
            outcomes["done"] += 1
        elif OutputState.STALE in found:
            outcomes[OTHER_SETTINGS] += 1
        elif last.get(canonical(video), {}).get("status") == "failed":
            outcomes["failed"] += 1
            lines.append(f"failed: {canonical(video)}: {last[canonical(video)]['error']}")
        else:
            outcomes["not done"] += 1
    return outcomes, lines


def _checks(options: Options, output_dir: str, keys: list[str], settings: Optional[dict]) -> list[Callable]:
    """For each format a run of this command line saves (every format where it does not say: print),
    a function giving a video's OutputState by its name."""
    formats = [options.on_extraction] if options.saving else [f for f in OnExtraction if f != OnExtraction.print]
    checks = []
    for each in formats:
        if each == OnExtraction.save_parquet:
            index = ShardIndex(output_dir)  # the committed shards' footers
            checks.append(lambda name, index=index: index.status(name, settings))
        else:
            store = OutputStore(output_dir, each.value)
            checks.append(lambda name, store=store: store.state(name, keys, settings))
    return checks
