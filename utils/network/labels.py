"""Class names for show_pred."""
import functools


@functools.cache
def kinetics400() -> list[str]:
    """The 400 Kinetics classes in the standard index order, shipped with torchvision (offline)."""
    from torchvision.models.video import R2Plus1D_18_Weights

    return list(R2Plus1D_18_Weights.KINETICS400_V1.meta["categories"])


@functools.cache
def class_names(label_set: str) -> list[str]:
    """A checkpoint's ``classes``: ``kinetics400``, or a text file with one class per line (line i is logit i)."""
    if label_set == "kinetics400":
        return kinetics400()
    with open(label_set, encoding="utf-8") as file:
        return [line.rstrip("\n") for line in file if line.strip()]
