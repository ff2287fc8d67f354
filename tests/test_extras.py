"""Commands that need an optional extra say so in one line, before any work (issue 22).

The base install is light (numpy, Pillow, onnxruntime, tqdm, SciPy); torch and scikit-image come with
``recolorize[train]``, color-matcher (GPL-3.0) with ``recolorize[compare]``. Each check runs the real CLI in
a fresh interpreter where the package is hidden (``sys.modules[name] = None``: its import fails and
``importlib.util.find_spec`` finds nothing, as where it is not installed), so removing a check makes its
test fail: the command would go on to a traceback or, for hm-mkl-hm, a progress bar and a later error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import encode, picture, subprocess_env
from recolorize.errors import UserError, require

#: Runs ``recolorize.cli.main`` on each argv of ``argv_list`` (JSON) with ``hidden`` packages hidden;
#: prints, per argv, the exit code, stderr and whether torch got imported.
_RUNNER = """
import contextlib, io, json, sys
hidden, argv_list = sys.argv[1].split(","), json.loads(sys.argv[2])
for name in hidden:
    sys.modules[name] = None
from recolorize.cli import main
results = []
for argv in argv_list:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # a traceback the user would see
            code = f"raised {type(exc).__name__}: {exc}"
    results.append({"code": code, "err": err.getvalue()})
print(json.dumps(results))
"""


def run_hidden(hidden: list[str], argv_list: list[list[str]]) -> list[dict[str, object]]:
    """``recolorize`` with the ``hidden`` packages unimportable: each argv's exit code and stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, ",".join(hidden), json.dumps(argv_list)],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture()
def pairs_csv(tmp_path: Path) -> Path:
    """A valid pairs CSV of two small photos (source, reference, target), so only the extra is missing."""
    for index, name in enumerate(("source", "reference", "target")):
        (tmp_path / f"{name}.png").write_bytes(encode(picture(seed=index)))
    path = tmp_path / "pairs.csv"
    path.write_text("source,reference,target\nsource.png,reference.png,target.png\n")
    return path


def test_hm_mkl_hm_without_color_matcher_is_one_line_before_any_work(pairs_csv: Path, tmp_path: Path) -> None:
    """Before: a progress bar, then the first pair failed. Now the exact pip command, and nothing written."""
    out = tmp_path / "report"
    dpst = tmp_path / "dpst"
    argv_list = [
        ["eval", "--pairs", str(pairs_csv), "--methods", "identity,hm-mkl-hm", "--out", str(out)],
        ["dpst-report", "--dpst", str(dpst), "--methods", "hm-mkl-hm", "--out", str(out)],
    ]
    results = run_hidden(["color_matcher"], argv_list)
    for command, result in zip(("eval", "dpst-report"), results, strict=True):
        assert result["code"] == 2, result
        assert result["err"] == (
            f"recolorize: error: {command} --methods hm-mkl-hm needs color-matcher: "
            "pip install 'recolorize[compare]'\n"
        ), result
    assert not out.exists()


def test_the_default_methods_leave_hm_mkl_hm_out_without_color_matcher() -> None:
    """The default list names hm-mkl-hm only where color-matcher is installed, so a plain ``eval`` runs."""
    code = (
        "import sys; sys.modules['color_matcher'] = None\n"
        "from recolorize.commands.eval import DEFAULT_METHODS; print(DEFAULT_METHODS)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=subprocess_env()
    )
    assert done.returncode == 0 and done.stdout.strip() == "ours,reinhard,mkl,histogram,identity", done


#: Every command that needs the train extra, with arguments argparse accepts (nothing they name exists: the
#: extra must be refused before any of it is looked at).
TRAINING_COMMANDS: dict[str, list[str]] = {
    "train": ["--config", "tiny", "--data", "{missing}", "--run", "{out}"],
    "build-cache": ["--data", "{missing}", "--out", "{out}"],
    "eval": ["--pairs", "{missing}", "--methods", "reinhard", "--out", "{out}"],
    "dpst-report": ["--dpst", "{missing}", "--methods", "reinhard", "--out", "{out}"],
    "analyse": ["table3", "--images", "{missing}", "--out", "{out}"],
    "augment-grid": ["--data", "{missing}", "--out", "{out}"],
    "make-bench": ["--images", "{missing}", "--out", "{out}"],
}


@pytest.mark.parametrize("hidden, package", [("torch", "torch"), ("skimage", "scikit-image")])
def test_training_commands_without_the_train_extra_are_one_line(
    hidden: str, package: str, tmp_path: Path
) -> None:
    """Each research command, its extra hidden: exit 2 and one line with the pip command, before it looks
    at its arguments (without the check: a ModuleNotFoundError traceback, or 'not found' for the missing
    folder first)."""
    names = {"missing": str(tmp_path / "missing"), "out": str(tmp_path / "out")}
    argv_list = [[command, *(a.format(**names) for a in args)] for command, args in TRAINING_COMMANDS.items()]
    results = run_hidden([hidden], argv_list)
    for command, result in zip(TRAINING_COMMANDS, results, strict=True):
        expected = f"recolorize: error: {command} needs {package}: pip install 'recolorize[train]'\n"
        assert result == {"code": 2, "err": expected}, (command, result)
    assert not (tmp_path / "out").exists()


#: Commands whose module still imports torch when it is registered (``recolorize --help``); issue 22 moves
#: ``export`` (the other half of the issue) and this entry goes with it.
TORCH_AT_REGISTRATION: set[str] = set()


def test_every_command_registers_without_torch_and_scikit_image() -> None:
    """``recolorize --help`` and each command's ``--help`` read every command module: none may import the
    train extra's packages at the top (a base install would get a traceback instead of the help)."""
    from recolorize.cli import COMMAND_MODULES

    commands = [
        n.replace("_", "-") for n in COMMAND_MODULES if n.replace("_", "-") not in TORCH_AT_REGISTRATION
    ]
    code = (
        "import sys\n"
        "for name in ('torch', 'skimage', 'matplotlib', 'color_matcher'):\n"
        "    sys.modules[name] = None\n"
        "from recolorize.cli import build_parser\n"
        f"for command in {commands!r}:\n"
        "    build_parser(only=command)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=subprocess_env()
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_python_m_recolorize_training_without_torch_is_one_line(tmp_path: Path) -> None:
    """torchrun's entry point (``python -m recolorize.training``) takes the same check as ``train``."""
    code = (
        "import runpy, sys; sys.modules['torch'] = None\n"
        f"sys.argv = ['x', '--config', 'tiny', '--data', {str(tmp_path)!r}, '--run', {str(tmp_path)!r}]\n"
        "runpy.run_module('recolorize.training', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=subprocess_env()
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == "recolorize: error: train needs torch: pip install 'recolorize[train]'\n"


def test_require_names_the_pip_package_and_the_extra() -> None:
    require("json", "train", "anything")  # present: nothing happens
    with pytest.raises(UserError) as refused:
        require("no_such_module_for_recolorize", "compare", "eval --methods x", "no-such-package")
    assert str(refused.value) == "eval --methods x needs no-such-package: pip install 'recolorize[compare]'"
    with pytest.raises(UserError, match=r"needs no_such\.sub: pip install 'recolorize\[train\]'"):
        require("no_such.sub", "train", "train")  # a missing parent package is missing too


def test_make_bench_kinds_are_the_benchs() -> None:
    """``make-bench --kind`` lists its choices without importing the bench (torch); they stay the same."""
    from recolorize.commands.make_bench import KINDS
    from recolorize.evaluation.bench import BENCH_KINDS

    assert KINDS == BENCH_KINDS
