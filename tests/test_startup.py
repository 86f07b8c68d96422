"""A mistyped option, --help and --cfg job are answered before anything heavy is imported (torch,
PyAV: seconds on a busy machine); benchmarks/startup.py measures how long they take."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLE_B

PROBE = """
import runpy, sys
sys.argv = ['main.py', *sys.argv[1:]]
try:
    runpy.run_path({main!r}, run_name='__main__')
except SystemExit as exit:
    code = exit.code
print(code, sorted(name for name in ('torch', 'av', 'torchvision') if name in sys.modules), file=sys.stderr)
"""


def answer_and_heavy_imports(*args) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(main=str(ROOT / "main.py")), *args],
                          capture_output=True, text=True, cwd=ROOT)
    *lines, last = done.stderr.strip().splitlines()
    return "\n".join(lines), last


@pytest.mark.parametrize("args, answer", [
    (["batch_sise=2"], "error: unknown option 'batch_sise' (see python main.py --help)"),
    (["feature_type=slowfast", "stack_size=16", f"video_paths={SAMPLE_B}"],
     "error: stack_size=16 is too short for slowfast_r50: a window must hold at least the 32 frames the network sees"),
    (["model_name=r2plus1d_99"], "error: unknown model_name 'r2plus1d_99' for feature_type=r21d; choose one of: "
                                 "r2plus1d_18_16_kinetics, r2plus1d_34_32_ig65m_ft_kinetics, r2plus1d_34_8_ig65m_ft_kinetics"),
    (["video_paths=/no/such.mp4"], "error: video_paths: /no/such.mp4: no such file or folder"),
])
def test_an_option_error_comes_before_torch_and_pyav_are_imported(args, answer):
    errors, imports = answer_and_heavy_imports(*args)
    assert errors == answer
    assert imports == "2 []"


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job", "feature_type=timesformer"]])
def test_help_and_the_resolved_config_come_before_torch_and_pyav_are_imported(args):
    _, imports = answer_and_heavy_imports(*args)
    assert imports in ("None []", "0 []")
