"""writer.json: one live writer per run folder; dead, reused, damaged or quiet claims lapse."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from reslab.errors import ReslabError
from reslab.train.run_lock import (
    QUIET_SECONDS,
    WRITER_FILE,
    check_not_written,
    claim_writer,
    live_writer,
    release_writer,
    this_process,
)


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)  # let it start (its /proc entry gets its start time)
    yield process
    process.kill()
    process.wait()


def write_claim(folder, **claim):
    (folder / WRITER_FILE).write_text(json.dumps(claim))


def test_claim_and_release(tmp_path):
    claim_writer(tmp_path)
    assert json.loads((tmp_path / WRITER_FILE).read_text()) == this_process()
    assert live_writer(tmp_path) is None  # this process is not "another writer"
    assert [p.name for p in tmp_path.iterdir()] == [WRITER_FILE]  # no temporary file left
    release_writer(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_live_process_on_this_host_blocks(tmp_path, sleeper):
    me = this_process()
    if me["namespace"] is None or me["start"] is None:
        pytest.skip("needs /proc to tell processes apart")
    claim = {**me, "pid": sleeper.pid, "start": open(f"/proc/{sleeper.pid}/stat").read()
             .rsplit(")", 1)[1].split()[19]}
    write_claim(tmp_path, **claim)
    assert live_writer(tmp_path) == claim
    with pytest.raises(ReslabError, match=f"being written by process {sleeper.pid} on "):
        claim_writer(tmp_path)
    with pytest.raises(ReslabError, match="see .*writer.json"):
        check_not_written(tmp_path)
    release_writer(tmp_path)  # not ours: kept
    assert (tmp_path / WRITER_FILE).is_file()
    write_claim(tmp_path, **{**claim, "start": "1"})  # the pid, reused by another process
    assert live_writer(tmp_path) is None
    sleeper.kill()
    sleeper.wait()
    write_claim(tmp_path, **claim)
    assert live_writer(tmp_path) is None  # its process is gone
    claim_writer(tmp_path)  # the dead claim is replaced
    assert json.loads((tmp_path / WRITER_FILE).read_text()) == this_process()


@pytest.mark.parametrize("claim", [
    {"host": "another-host", "pid": 12345},
    {"host": socket.gethostname(), "pid": 12345, "namespace": "pid:[another container]"},
])
def test_unprobed_writer_counts_as_live_while_the_folder_changes(tmp_path, claim):
    write_claim(tmp_path, **claim)
    (tmp_path / "metrics.csv").write_text("iteration\n")
    assert live_writer(tmp_path) == claim
    assert live_writer(tmp_path, now=time.time() + QUIET_SECONDS + 1) is None
    with pytest.raises(ReslabError, match="being written by process 12345"):
        claim_writer(tmp_path)
    quiet = time.time() - QUIET_SECONDS - 1
    for name in (WRITER_FILE, "metrics.csv"):
        os.utime(tmp_path / name, (quiet, quiet))
    claim_writer(tmp_path)
    assert json.loads((tmp_path / WRITER_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("text", ["", "{\"host\": \"x\"", "[1, 2]"])
def test_damaged_claim_is_replaced(tmp_path, text):
    (tmp_path / WRITER_FILE).write_text(text)
    assert live_writer(tmp_path) is None
    claim_writer(tmp_path)
    assert json.loads((tmp_path / WRITER_FILE).read_text()) == this_process()


def test_a_run_still_training_without_a_checkpoint_says_so(tmp_path):
    from reslab.train.checkpoint import checkpoint_file

    with pytest.raises(ReslabError, match="is not a run folder: it has no best.safetensors"):
        checkpoint_file(tmp_path)
    write_claim(tmp_path, host="other-node", pid=7, namespace=None, start=None)
    with pytest.raises(ReslabError) as raised:
        checkpoint_file(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path} is still being trained (process 7 on other-node) and has no checkpoint yet: "
        "the first comes with its first evaluation (--eval-every)")


def test_reading_a_run_that_is_still_training_warns(tmp_path, caplog):
    """eval, predict, export and show read a run folder's checkpoint as it stands (it is always
    complete); while the run trains on, they say so, with the checkpoint's time."""
    from reslab.train.checkpoint import checkpoint_file

    (tmp_path / "best.safetensors").write_bytes(b"weights")
    with caplog.at_level("WARNING", logger="reslab.train.checkpoint"):
        assert checkpoint_file(tmp_path) == tmp_path / "best.safetensors"
    assert caplog.text == ""  # no writer: nothing to say
    write_claim(tmp_path, host="other-node", pid=7, namespace=None, start=None)  # fresh, so live
    with caplog.at_level("WARNING", logger="reslab.train.checkpoint"):
        assert checkpoint_file(tmp_path) == tmp_path / "best.safetensors"
    mtime = (tmp_path / "best.safetensors").stat().st_mtime
    saved = time.strftime("%H:%M:%S", time.localtime(mtime))
    assert f"{tmp_path} is still being trained (process 7 on other-node): reading " \
           f"best.safetensors as saved at {saved}" in caplog.text
    caplog.clear()
    os.utime(tmp_path / WRITER_FILE, (time.time() - 2 * QUIET_SECONDS,) * 2)  # gone quiet: dead
    with caplog.at_level("WARNING", logger="reslab.train.checkpoint"):
        checkpoint_file(tmp_path)
    assert caplog.text == ""
