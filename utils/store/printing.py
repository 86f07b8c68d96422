"""What on_extraction=print and show_pred print: each output's shape and values, each window's top classes."""
import numpy as np


def describe_outputs(name: str, outputs: dict[str, np.ndarray]) -> str:
    """The print sink: each key's shape and min/mean/max."""
    lines = [name]
    for key, value in outputs.items():
        value = np.asarray(value)
        lines.append(f"  {key}: shape {tuple(value.shape)}  min {value.min():.4g}  mean {value.mean():.4g}  "
                     f"max {value.max():.4g}")
    return "\n".join(lines)


def describe_predictions(logits: np.ndarray, times_ms: np.ndarray, class_names, top: int = 5) -> str:
    """show_pred: the top classes of every window with their softmax probabilities.

    ``logits``: (windows, classes), or (windows, crops, classes), whose crops' probabilities are
    averaged, as the official multi-view tests average softmax scores (not logits)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    if probabilities.ndim == 3:
        probabilities = probabilities.mean(axis=1)
    lines = []
    if class_names is None:
        lines.append("  (class names are not known for this checkpoint; showing class indices)")
    for row, (start, end) in zip(probabilities, times_ms):
        best = np.argsort(-row)[:top]
        labels = [f"{class_names[i] if class_names else i} {row[i]:.3f}" for i in best]
        lines.append(f"  {start / 1000:7.2f}-{end / 1000:7.2f} s  " + " | ".join(labels))
    return "\n".join(lines)
