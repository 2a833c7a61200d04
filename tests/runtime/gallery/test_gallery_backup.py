"""One file to back up (issue 22, item 9): closing checkpoints the write-ahead log into the file,
and `edgedml gallery backup` copies a gallery as one consistent file while doors hold it open."""

import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from edgedml.cli import main
from edgedml.runtime.gallery.backup import backup_gallery
from edgedml.runtime.gallery.sqlite_store import SQLiteStore
from edgedml.runtime.gallery.store import GalleryError, Layout

LAYOUT = Layout(4, (2, 3), "0" * 64, "none")
# a process that opens the gallery, does one thing and keeps it open (nothing checkpointed while it lives)
HOLD = """
import sys, time
from edgedml.runtime.gallery.store import Layout
from edgedml.runtime.gallery.sqlite_store import SQLiteStore
store = SQLiteStore(sys.argv[1], Layout(4, (2, 3), "0" * 64, "none"))
if sys.argv[2] == "revoke":
    assert store.remove("bob")
elif sys.argv[2] == "read":
    store.db.execute("BEGIN")
    store.db.execute("SELECT COUNT(*) FROM templates").fetchone()  # a read transaction left open
else:
    store.identities()
print("ready", flush=True)
time.sleep(600)
"""


def _enroll(store, name, n=1):
    rng = np.random.default_rng(len(name))
    store.enroll(name, rng.random((n, 4), np.float32), rng.random((n, 2, 3), np.float32), None, [None] * n)


def _gallery(path):
    store = SQLiteStore(path, LAYOUT)
    _enroll(store, "alice", 2)
    _enroll(store, "bob")
    store.close()
    return path


def _names_in_the_file_alone(path):
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True) as db:
        return sorted(row[0] for row in db.execute("SELECT name FROM identities"))


@pytest.fixture
def holders():
    processes = []

    def hold(db, action="open"):
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(db), action], stdout=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "ready"
        return process

    yield hold
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_a_backup_while_another_process_holds_the_revocation_in_its_log(tmp_path, holders):
    db = _gallery(tmp_path / "g.db")
    holders(db)
    holders(db, "revoke")
    assert _names_in_the_file_alone(db) == ["alice", "bob"]  # the revocation is in g.db-wal only
    before = {name: (tmp_path / name).read_bytes() for name in ("g.db", "g.db-wal")}  # the -shm is shared memory
    result = CliRunner().invoke(main, ["gallery", "backup", str(db), str(tmp_path / "copy.db")])
    assert result.exit_code == 0, result.output
    assert "1 identities, 2 templates" in result.output and "integrity check ok" in result.output
    copy = tmp_path / "copy.db"
    assert _names_in_the_file_alone(copy) == ["alice"]  # one file: no log to carry along
    assert not (tmp_path / "copy.db-wal").exists() and copy.read_bytes()[18:20] == b"\x01\x01"
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # the source was only read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "g.db", "g.db-shm", "g.db-wal"]
    store = SQLiteStore(copy, LAYOUT)  # a gallery again
    assert store.identities() == {"alice": 2}
    store.close()


def test_overwrite_replaces_an_earlier_backup_and_nothing_else(tmp_path):
    db = _gallery(tmp_path / "g.db")
    backup_gallery(db, tmp_path / "copy.db")
    store = SQLiteStore(db, LAYOUT)
    store.remove("bob")
    store.close()
    with pytest.raises(GalleryError, match="exists; pass a new path, or --overwrite"):
        backup_gallery(db, tmp_path / "copy.db")
    assert backup_gallery(db, tmp_path / "copy.db", overwrite=True).identities == 1
    assert _names_in_the_file_alone(tmp_path / "copy.db") == ["alice"]
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(GalleryError, match="not an edgedml gallery: --overwrite replaces only an earlier backup"):
        backup_gallery(db, tmp_path / "notes.txt", overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_closing_checkpoints_the_log_into_the_file_while_others_hold_it(tmp_path, holders):
    """The file alone holds an acknowledged revocation once its writer closed, though another
    process keeps the gallery open; deleting the log after a kill -9 loses nothing."""
    db = _gallery(tmp_path / "g.db")
    door = holders(db)
    store = SQLiteStore(db, LAYOUT)
    assert store.remove("bob")
    _enroll(store, "carol")
    store.close()
    assert _names_in_the_file_alone(db) == ["alice", "carol"]
    assert (tmp_path / "g.db-wal").stat().st_size == 0  # truncated
    door.send_signal(signal.SIGKILL)
    door.wait()
    for leftover in ("g.db-wal", "g.db-shm"):
        (tmp_path / leftover).unlink(missing_ok=True)
    store = SQLiteStore(db, LAYOUT)
    assert store.identities() == {"alice": 2, "carol": 1}
    store.close()


def test_a_reader_in_a_transaction_does_not_make_the_close_fail_or_hang(tmp_path, holders):
    db = _gallery(tmp_path / "g.db")
    holders(db, "read")
    store = SQLiteStore(db, LAYOUT)
    assert store.remove("bob")
    start = time.monotonic()
    store.close()  # the reader's snapshot keeps part of the log: best effort, no error
    assert time.monotonic() - start < 10
    store = SQLiteStore(db, LAYOUT)
    assert store.identities() == {"alice": 2}
    store.close()
