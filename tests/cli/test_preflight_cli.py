"""`dermpipe run` and `submit` stop with exit 2 and the stage's message before anything starts."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from dermpipe.cli.main import app


def test_run_with_a_missing_source_exits_2_before_the_runner_starts(run_local_calls):
    result = CliRunner().invoke(app, ["run", "--source", "/no/such/folder", "--backbone", "vgg16"])
    assert result.exit_code == 2
    assert run_local_calls == []
    lines = result.output.splitlines()
    assert lines[0] == "dermpipe: pre-flight check failed, nothing was started:"
    assert lines[1].startswith("  ingest: source '/no/such/folder': it does not exist;")
    assert lines[2].startswith("  train: backbone 'vgg16' is not supported; choose one of ['efficientnet_b0'")


def test_run_with_good_parameters_reaches_the_runner(run_local_calls, isic_sample):
    result = CliRunner().invoke(app, ["run", "--source", str(isic_sample), "--folds", "3"])
    assert result.exit_code == 0, result.output
    assert run_local_calls[0]["source"] == str(isic_sample) and run_local_calls[0]["folds"] == 3


def test_submit_checks_before_compiling_or_connecting(tmp_path):
    result = CliRunner().invoke(app, ["submit", "--backend", "kfp", "--host", "http://127.0.0.1:9",
                                      "--param", "test_size=0.7", "--param", "source=kaggle:nobody"])
    assert result.exit_code == 2, result.output
    assert "ingest: kaggle:nobody: expected kaggle:<owner>/<dataset>" in result.output
    assert "split: split size 0.7 is out of range; expected a fraction in (0, 0.5)" in result.output


def test_a_real_dermpipe_run_refuses_in_about_the_time_of_help():
    """The subprocess is what a user runs; neither TensorFlow nor kfp may be imported on the way to exit 2."""
    code = ("import sys, runpy; sys.argv = ['dermpipe', 'run', '--source', '/no/such/folder'];\n"
            "try:\n    runpy.run_module('dermpipe.cli.main', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    heavy = {m.split('.')[0] for m in sys.modules} & {'tensorflow', 'kfp', 'keras'}\n"
            "    print('exit', e.code, sorted(heavy))")
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "exit 2 []", done.stdout + done.stderr
    assert "ingest: source '/no/such/folder': it does not exist" in done.stderr
