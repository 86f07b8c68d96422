"""crops=3|5|10: each crop against the reference crop of the resized frame, the crop batch against
each crop run alone, crops=1 against torchvision's network on the published recipe, and the outputs'
shapes. SlowFast's and TimeSformer's crops through the command line are in their own test files."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torchvision.models.video import r2plus1d_18

from tests.conftest import ROOT, SAMPLE_B, cli, make_extractor
from tests.decoding import decode_all
from tests.recipes import R21D_TOLERANCE, decoded_frames, r21d_recipe, reference_features
from video_features.models.registry import load_family
from video_features.utils.frames.crops import crop_boxes
from video_features.utils.frames.transforms import preprocess
from video_features.utils.store.printing import describe_predictions
from video_features.utils.video.reader import VideoReader

# one window of 8 frames: 10 crops of it stay cheap on a CPU
ONE_WINDOW = dict(stack_size=8, step_size=200)


def preprocessing_of(feature_type: str):
    return load_family(feature_type, f"video_features.models.{feature_type}").default.preprocessing


def resized_reference(frames: torch.Tensor, preprocessing) -> torch.Tensor:
    """The whole resized frame in the reference order of operations: float, resize, normalise."""
    resized_hw = preprocessing.geometry(*frames.shape[1:3]).resize_hw
    x = frames.permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=resized_hw, mode="bilinear", align_corners=False, antialias=False)
    return (x - torch.tensor(preprocessing.mean).view(1, 3, 1, 1)) / torch.tensor(preprocessing.std).view(1, 3, 1, 1)


def uniform_crop(image: torch.Tensor, size: int, spatial_index: int) -> torch.Tensor:
    """PySlowFast's uniform_crop (slowfast/datasets/transform.py), written out again."""
    height, width = image.shape[-2:]
    y, x = int(math.ceil((height - size) / 2)), int(math.ceil((width - size) / 2))
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_index]
    else:
        x = {0: 0, 1: x, 2: width - size}[spatial_index]
    return image[..., y : y + size, x : x + size]


def reference_crops(image: torch.Tensor, size: int, crops: int) -> list[torch.Tensor]:
    if crops == 3:
        return [uniform_crop(image, size, index) for index in range(3)]
    return list((T.FiveCrop(size) if crops == 5 else T.TenCrop(size))(image))


@pytest.mark.parametrize("crops", [3, 5, 10])
@pytest.mark.parametrize("feature_type", ["r21d", "slowfast", "timesformer"])
@pytest.mark.parametrize("height, width", [(270, 480), (301, 199)])  # landscape; portrait with odd margins
def test_each_crop_is_the_reference_crop_of_the_resized_frame(crops, feature_type, height, width):
    preprocessing = preprocessing_of(feature_type)
    frames = torch.randint(0, 256, (2, height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = preprocess(frames, preprocessing, crops)
    expected = reference_crops(resized_reference(frames, preprocessing), preprocessing.crop, crops)
    assert ours.shape == (2, crops, 3, preprocessing.crop, preprocessing.crop)
    for crop, reference in enumerate(expected):
        torch.testing.assert_close(ours[:, crop], reference, atol=2e-6, rtol=0, msg=f"crop {crop}")


def test_three_crops_run_along_the_long_side():
    # r21d's exact 128x171 resize: x at 0, ceil(59 / 2) = 30 (where its own centre crop rounds to 30 too), 59
    assert [(b.top, b.left) for b in crop_boxes(3, 128, 171, 112)] == [(8, 0), (8, 30), (8, 59)]
    assert [(b.top, b.left) for b in crop_boxes(3, 455, 256, 256)] == [(0, 0), (100, 0), (199, 0)]
    assert [(b.top, b.left, b.flip) for b in crop_boxes(10, 128, 171, 112)][4:6] == [(8, 30, False), (0, 0, True)]


@pytest.mark.parametrize("crops", [3, 10])
def test_each_crop_of_the_batch_has_the_features_of_that_crop_run_alone(crops, r21d_checkpoint):
    extractor = make_extractor(crops=crops, weights_path=r21d_checkpoint, **ONE_WINDOW)
    batched = extractor.extract(SAMPLE_B)["r21d"]
    assert batched.shape == (1, crops, 512)
    with VideoReader(SAMPLE_B) as reader:  # the window: the first 8 frames
        frames = torch.from_numpy(np.stack([frame.image for frame in decode_all(reader) if frame.index < 8]))
    preprocessing = extractor.checkpoint.preprocessing
    crop_views = reference_crops(resized_reference(frames, preprocessing), preprocessing.crop, crops)
    for crop, view in enumerate(crop_views):  # (T, C, h, w) -> one clip (1, C, T, h, w) through the network alone
        features = extractor.inference(view.permute(1, 0, 2, 3)[None])[0].numpy()
        np.testing.assert_allclose(batched[:, crop], features, atol=1e-5, rtol=1e-5, err_msg=f"crop {crop}")


def test_one_crop_is_the_centre_crop_of_the_published_recipe(r21d_checkpoint):
    extractor = make_extractor(weights_path=r21d_checkpoint, crops=1, stack_size=16, step_size=64)  # frames skipped
    assert extractor.settings()["crops"] == 1
    features = extractor.extract(SAMPLE_B)["r21d"]
    # torchvision's network on the published recipe, computed apart from the project
    network = r2plus1d_18(weights=None)
    network.load_state_dict(torch.load(r21d_checkpoint))
    frames = decoded_frames(SAMPLE_B)
    expected = reference_features(network, torch.stack([r21d_recipe(frames[start : start + 16]) for start in (0, 64, 128)]))
    assert features.shape == (3, 512)
    np.testing.assert_allclose(features, expected, atol=R21D_TOLERANCE, rtol=0)


def test_crops_and_crop_reduce_through_the_command_line(r21d_checkpoint, tmp_path, capsys):
    def run(*args):
        code = cli(*[f"weights_path={r21d_checkpoint}", f"output_path={tmp_path}", "device=cpu",
                     f"video_paths=[{SAMPLE_B}]", f"input_root={ROOT / 'sample'}", "stack_size=8", "step_size=64",
                     "on_extraction=save_numpy", *args])
        assert code == 0
        return np.load(tmp_path / "r21d" / "r2plus1d_18_16_kinetics" / "b_r21d.npy"), capsys.readouterr()

    per_crop, _ = run("crops=3", "batch_size=2")  # 3 windows: a full batch and a part one
    assert per_crop.shape == (3, 3, 512)
    reduced, captured = run("crops=3", "crop_reduce=mean", "show_pred=true")
    assert reduced.shape == (3, 512)
    np.testing.assert_allclose(reduced, per_crop.mean(axis=1), atol=1e-5, rtol=1e-5)
    assert "(1 replaced outputs made with other settings)" in captured.err  # crop_reduce is in the record
    rows = [line for line in captured.out.splitlines() if line.strip().startswith("0.00-")]
    assert len(rows) == 1 and len(rows[0].split(" | ")) == 5
    assert run("crops=1")[0].shape == (3, 512)


def test_show_pred_averages_the_crops_probabilities():
    # crop 0 is sure of class 0, crop 1 of class 1: averaged probabilities are a half each (averaged
    # logits would give a third each)
    logits = np.array([[[20.0, 0.0, 0.0], [0.0, 20.0, 0.0]]])
    text = describe_predictions(logits, np.array([[0.0, 1000.0]]), ["a", "b", "c"], top=3)
    assert text.strip().endswith("a 0.500 | b 0.500 | c 0.000")


def test_an_unknown_crop_count_is_one_line_naming_the_option(capsys):
    assert cli(*[f"video_paths=[{SAMPLE_B}]", "pretrained=false", "device=cpu", "crops=4"]) == 2
    err = capsys.readouterr().err
    assert err == "error: crops must be one of 1, 3, 5, 10, got 4\n"
