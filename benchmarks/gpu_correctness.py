"""The GPU check's first cell: are the device's features right? A stream or slot-reuse bug gives
fast, wrong features, which no rate shows.

The reference is the CPU's fp32 features of the sample clips, decoded by one process. The device
under test gives its fp32 features of the same clips, with the same (random) weights, once with one
decoding process and once with decode_workers=auto: the cell says the largest absolute difference
of each, whether the windows (their number and times) are those of the reference, and the error of
bf16 against the reference (the largest relative L2 error of a window's features). On a CPU the
device under test is the CPU: the cell then checks the decoding processes and the comparison.
"""
import os
from typing import Callable, Optional, Union

import numpy as np
from timed_cells import NotApplicable

# Of the reference's largest magnitude. The CPU's and cuDNN's fp32 kernels round differently;
# TF32, which the pipeline turns off, was 1e-3 off (benchmarks/README.md, GPUs).
FP32_TOLERANCE = 1e-4
BF16_TOLERANCE = 2e-2  # the stated tolerance (benchmarks/README.md, Precision)


def features(extractor, paths: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Each path's outputs; a failed video fails the cell."""
    outputs = {}
    for result in extractor.extract_many(paths):
        if result.error:
            raise RuntimeError(f"{result.path}: {result.error}")
        outputs[result.path] = result.outputs
    return outputs


def plant_wrong_feature(extractor) -> None:
    """--plant-wrong-feature: the first window the network gives comes back 1 % off, as the
    features of a slot overwritten too soon would."""
    forward, planted = extractor.inference._forward, []

    def wrong(clips):
        features, logits = forward(clips)
        if not planted:
            planted.append(True)
            features = features.clone()
            features[0] *= 1.01
        return features, logits

    extractor.inference._forward = wrong


def differing_windows(reference: dict, outputs: dict) -> Optional[str]:
    """How the windows differ from the reference's (the first video where they do), or None."""
    for path, expected in reference.items():
        got = outputs[path]["timestamps_ms"]
        if not np.array_equal(got, expected["timestamps_ms"]):
            return f"{os.path.basename(path)}: {len(got)} windows against {len(expected['timestamps_ms'])}"
    return None


def largest_difference(reference: dict, outputs: dict, feature_type: str) -> float:
    return max(float(np.abs(outputs[p][feature_type] - r[feature_type]).max()) for p, r in reference.items())


def relative_error(reference: dict, outputs: dict, feature_type: str) -> float:
    """The largest relative L2 error of a window's features: |f - f_ref| / |f_ref|."""
    errors = []
    for path, expected in reference.items():
        full, reduced = expected[feature_type], outputs[path][feature_type]
        errors.append((np.linalg.norm(reduced - full, axis=-1) / np.linalg.norm(full, axis=-1)).max())
    return float(max(errors))


class Findings:
    """What the cell found against the reference: its figures, and the problems that make it WRONG."""

    def __init__(self, reference: dict, feature_type: str):
        self.reference, self.feature_type = reference, feature_type
        self.scale = max(float(np.abs(r[feature_type]).max()) for r in reference.values())
        self.figures: list[str] = []
        self.problems: list[str] = []

    def _same_windows(self, outputs: dict, label: str) -> bool:
        differ = differing_windows(self.reference, outputs)
        if differ:
            self.problems.append(f"windows differ with {label} ({differ})")
        return differ is None

    def fp32(self, outputs: dict, label: str) -> None:
        if self._same_windows(outputs, label):
            difference = largest_difference(self.reference, outputs, self.feature_type)
            self.figures.append(f"fp32 max diff {difference:.1e} ({label})")
            if difference > FP32_TOLERANCE * self.scale:
                self.problems.append(f"fp32 with {label} over {FP32_TOLERANCE * self.scale:.1e}")

    def bf16(self, outputs: dict) -> None:
        if self._same_windows(outputs, "bf16"):
            error = relative_error(self.reference, outputs, self.feature_type)
            self.figures.append(f"bf16 error {error:.1e}")
            if error > BF16_TOLERANCE:
                self.problems.append(f"bf16 over {BF16_TOLERANCE}")

    def text(self) -> str:
        if self.problems:
            return "WRONG: " + "; ".join(self.problems + self.figures)
        return "ok: " + "; ".join(self.figures + ["windows equal"])


def device_features(extractor, weights: dict, samples: list[str], plant: bool = False) -> dict:
    """The samples' outputs with ``weights`` (the reference's), the pipeline closed after."""
    extractor.inference.network.load_state_dict(weights)  # rounded to bf16 where a bf16 network keeps bf16
    if plant:
        plant_wrong_feature(extractor)
    with extractor:
        return features(extractor, samples)


def correctness(build: Callable, feature_type: str, samples: list[str], workers: Union[int, str] = "auto",
                plant: bool = False):
    """The cell's text ("ok: ..." or "WRONG: ..."), and the device's fp32 extractor with ``workers``
    decoding processes (its pipeline closed), which the fp32 cell times next. ``build(**options)``:
    an extractor of ``feature_type`` with the check's settings but ``options``; ``plant``: one
    window wrong with ``workers`` processes."""
    cpu = build(device="cpu", precision="fp32", decode_workers=1)
    weights = cpu.inference.network.state_dict()
    with cpu:
        findings = Findings(features(cpu, samples), feature_type)
    every = build(precision="fp32", decode_workers=workers)
    count = every.pipeline.decode_workers
    if count != 1:  # on a CPU, auto is 1: one run is both
        findings.fp32(device_features(build(precision="fp32", decode_workers=1), weights, samples), "1 process")
    label = f"{count} processes" if count != 1 else "1 process = all"
    findings.fp32(device_features(every, weights, samples, plant), label)
    try:
        reduced = build(precision="bf16", decode_workers=1)
    except NotApplicable as reason:
        findings.figures.append(f"bf16 n/a: {reason}")
    else:
        findings.bf16(device_features(reduced, weights, samples))
    return findings.text(), every
