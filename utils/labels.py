"""Class names for show_pred."""
import functools


@functools.cache
def kinetics400() -> list[str]:
    """The 400 Kinetics classes in the standard index order, shipped with torchvision (offline)."""
    from torchvision.models.video import R2Plus1D_18_Weights

    return list(R2Plus1D_18_Weights.KINETICS400_V1.meta["categories"])
