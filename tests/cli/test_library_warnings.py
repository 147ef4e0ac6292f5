"""TensorFlow's start-up lines (its C++ runtime writes them to file descriptor 2, past Python's warnings) go to the
command's warnings.log, counted, instead of the terminal; the descriptor is the terminal's again afterwards."""

import json
import subprocess
import sys
import warnings

from dermpipe.cli import library_warnings

START = ("import json, sys\n"
         "from dermpipe.cli.library_warnings import start_tensorflow\n"
         "first = start_tensorflow()\n"
         "print(json.dumps({'first': first, 'again': start_tensorflow()}))\n"
         "print('after start-up, stderr is the terminal again', file=sys.stderr)\n")


def test_start_up_lines_are_returned_not_printed():
    done = subprocess.run([sys.executable, "-P", "-c", START], capture_output=True, text=True, timeout=300,
                          check=True)
    returned = json.loads(done.stdout.splitlines()[-1])
    assert done.stderr.splitlines() == ["after start-up, stderr is the terminal again"], done.stderr
    assert returned["first"], "TensorFlow printed nothing at start-up: nothing to check"
    assert all(line.startswith(("WARNING: ", "I0", "W0", "E0", "F0")) for line in returned["first"]), returned
    assert returned["again"] == []  # already started: nothing imported, nothing redirected


def test_messages_join_continuation_lines():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.5   42 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
            "To enable the following instructions: AVX2 FMA, rebuild TensorFlow.\n\n"
            "E0000 00:00:2.5   42 cuda_platform.cc:52] failed call to cuInit\n")
    assert library_warnings.messages(text) == [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1.5   42 cpu_feature_guard.cc:227] This TensorFlow binary is optimized. To enable the following "
        "instructions: AVX2 FMA, rebuild TensorFlow.",
        "E0000 00:00:2.5   42 cuda_platform.cc:52] failed call to cuInit"]


def test_start_up_messages_are_logged_and_counted_beside_the_warnings(tmp_path):
    with library_warnings.captured() as caught:
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    counted = library_warnings.write_log(caught, tmp_path / "warnings.log", ["I0000 oneDNN custom operations",
                                                                               "E0000 failed call to cuInit"])
    assert counted == {"count": 3, "by_category": {"TensorFlowStartup": 2, "DeprecationWarning": 1},
                       "log": str(tmp_path / "warnings.log")}
    logged = (tmp_path / "warnings.log").read_text().splitlines()
    assert logged[0].startswith("DeprecationWarning ") and logged[0].endswith(": a library's deprecation")
    assert logged[1:] == ["TensorFlowStartup stderr: I0000 oneDNN custom operations",
                          "TensorFlowStartup stderr: E0000 failed call to cuInit"]
    assert library_warnings.write_log([], tmp_path / "none.log") == {"count": 0, "by_category": {}, "log": ""}
    assert not (tmp_path / "none.log").exists()
