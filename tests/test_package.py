"""The project installs as one package, video_features: no top-level `utils` or `models` of its own
in the environment, a user's own packages of those names keep working beside it, and the command
line and the Python API load each of its modules once. The API takes the command line's options as
typed keyword arguments, checked by the same schema."""
import inspect
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.conftest import ROOT, SAMPLE_B, run_cli
from tests.test_hydra import TINY_PACKAGE
from video_features import Extractor
from video_features.utils.errors import SettingsError
from video_features.utils.options import OPTIONS


def test_the_wheel_holds_one_top_level_package_with_every_subpackage_and_config(tmp_path):
    source = tmp_path / "source"  # a copy: building writes into the source folder
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True,
                            cwd=ROOT, check=True).stdout.split()
    for name in listed:
        if os.path.isfile(ROOT / name):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"video_features", wheel.name.split("-py")[0] + ".dist-info"}
    packages = sorted(os.path.relpath(folder, ROOT) for folder, _, files in os.walk(ROOT)
                      if "__init__.py" in files and os.path.relpath(folder, ROOT).split(os.sep)[0] in ("models", "utils"))
    for package in packages:
        assert f"video_features/{package}/__init__.py" in names, package
    assert "video_features/configs/feature_type/r21d.yaml" in names


def test_the_editable_install_maps_only_the_name_video_features():
    import importlib.metadata

    (installed,) = [d for d in importlib.metadata.distributions(path=[sysconfig.get_paths()["purelib"]])
                    if d.metadata["Name"] == "video-features"]
    files = installed.files
    finders = [f for f in files if f.name.startswith("__editable__") and f.name.endswith("_finder.py")]
    assert finders, "not an editable install"
    namespace = {}
    exec(finders[0].read_text(), namespace)
    assert set(namespace["MAPPING"]) == {"video_features"}


USERS_PACKAGES = {
    "utils/__init__.py": "WHO = 'the user'\n",
    "models/__init__.py": "WHO = 'the user'\n",
    # a network of the user's, registered as a feature type, whose code imports the user's own utils
    "usernet/__init__.py": "import utils\n\nassert utils.WHO == 'the user'\n" + TINY_PACKAGE.replace('"tiny', '"usernet'),
    "conf/feature_type/usernet.yaml": "# @package _global_\nfeature_type: usernet\nmodel_package: usernet\n",
}


@pytest.fixture
def users_folder(tmp_path):
    for name, text in USERS_PACKAGES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_users_own_utils_and_models_work_beside_the_command_line(users_folder):
    done = run_cli("feature_type=usernet", f"hydra.searchpath=[file://{users_folder / 'conf'}]",
                   f"video_paths=[{SAMPLE_B}]", "pretrained=false", "device=cpu", cwd=users_folder,
                   pythonpath=users_folder)
    assert done.returncode == 0, done.stderr
    assert "r21d" not in done.stdout and "usernet" in done.stdout


def test_a_users_own_utils_and_models_work_beside_the_api(users_folder):
    script = ("import utils, models, usernet\n"
              "from video_features import Extractor\n"
              f"outputs = Extractor('usernet', device='cpu', pretrained=False).extract({SAMPLE_B!r})\n"
              "assert utils.WHO == models.WHO == 'the user'\n"
              "print(outputs['usernet'].shape)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=users_folder,
                          env={**os.environ, "PYTHONPATH": str(users_folder)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(39, 3)"


def test_the_command_line_loads_each_module_once(tmp_path):
    """main.py runs from the repository root, where `utils` and `models` are folders: nothing may
    import them under those names beside video_features' own."""
    script = ("import runpy, sys\n"
              f"sys.argv = ['main.py', 'video_paths=[{SAMPLE_B}]', 'pretrained=false', 'device=cpu']\n"
              "try:\n"
              f"    runpy.run_path({str(ROOT / 'main.py')!r}, run_name='__main__')\n"
              "except SystemExit as exit:\n"
              "    assert not exit.code, exit.code\n"
              "files = [getattr(m, '__file__', None) for m in list(sys.modules.values())]\n"
              "ours = [f for f in files if f and f.startswith(sys.argv[-1]) and '/.venv/' not in f]\n"
              "print(len(ours), len(set(ours)), sorted(n for n in sys.modules if n.split('.')[0] in ('utils', 'models')))\n")
    done = subprocess.run([sys.executable, "-c", script.replace("sys.argv[-1]", repr(str(ROOT)))],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    loaded, distinct, top_level = done.stdout.strip().splitlines()[-1].split(" ", 2)
    assert int(loaded) > 40 and loaded == distinct and top_level.strip() == "[]"


def test_the_api_takes_every_option_as_a_typed_keyword_and_help_lists_them():
    parameters = inspect.signature(Extractor).parameters
    assert list(OPTIONS) == [name for name in parameters if name != "machine_share"]
    assert parameters["batch_size"].annotation is int and parameters["batch_size"].default == 1
    assert all(f"{name}:" in Extractor.__init__.__doc__ for name in OPTIONS)


@pytest.mark.parametrize("options, line", [
    ({"batch_size": "many"}, "batch_size: Value 'many' of type 'str' could not be converted to Integer"),
    ({"precision": "fp8"}, "precision: Invalid value 'fp8', expected one of [fp32, bf16, fp16]"),
    ({"crops": 4}, "crops must be one of 1, 3, 5, 10, got 4"),
    ({"batch_sise": 2}, "unknown option 'batch_sise' (see python main.py --help)"),
])
def test_a_bad_api_option_is_the_command_lines_one_line(options, line):
    with pytest.raises(SettingsError) as raised:
        Extractor("r21d", device="cpu", pretrained=False, **options)
    assert str(raised.value) == line
    (key, value), = options.items()
    done = run_cli(f"{key}={value}", f"video_paths=[{SAMPLE_B}]", "pretrained=false", "device=cpu")
    assert done.returncode == 2 and done.stderr.strip() == f"error: {line}"


def test_the_apis_warnings_are_one_line_as_the_command_lines(tmp_path):
    script = "from video_features import Extractor\nExtractor('r21d', device='cpu', pretrained=False)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "warning: pretrained=false: the network has random weights, so its features are meaningless\n"
