"""A read-only door never decides on an older snapshot than the last commit (issue 22, item 1).

The reproduction of the issue: alice and bob enrolled; a process holds the gallery open, so the
revocation of bob stays in ``g.db-wal``; the gallery becomes read-only (a read-only mount, a
chmod'ed folder or file for a door without root); the door is asked about bob. It must say he is
not enrolled (it read the log) or refuse to decide (it cannot read the log consistently): never
ACCEPTED. Every door here is a real ``edgedml verify`` process; the mounts are real tmpfs mounts
(skipped where the sandbox forbids them) and the non-root doors run as ``nobody`` (or as the
user running the tests, when that is not root).
"""

import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedml.runtime.gallery.gallery import Gallery
from edgedml.runtime.matching.matcher import Matcher

THRESHOLD = "1.5"  # a picture against its own template scores about 2; bob's own photo is accepted while enrolled
ALICE, BOB = "0.png", "2.png"
HOLD = """
import sys, time
from edgedml.runtime.gallery.gallery import Gallery
from edgedml.runtime.matching.matcher import Matcher
gallery = Gallery(sys.argv[1], Matcher(sys.argv[2]))
if sys.argv[3] == "revoke":
    assert gallery.revoke("bob")
else:
    gallery.identities()
print("ready", flush=True)
time.sleep(600)
"""


def _picture(path, seed):
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (80, 80), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), (np.clip(picture, 0, 1) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def kit(tiny_bundle):
    """A folder every user can read (a door without root must reach it): a tiny bundle, 4 pictures."""
    root = Path(tempfile.mkdtemp(prefix="edgedml-door-", dir="/tmp"))
    shutil.copytree(tiny_bundle[1], root / "bundle")  # the tiny model seeded with 0, exported once per session
    for i in range(4):
        _picture(root / f"{i}.png", i)
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class Door:
    """A gallery g.db in ``folder`` with alice (2 templates) and bob (1), and the processes
    holding it open."""

    def __init__(self, kit: Path, folder: Path):
        self.kit, self.folder, self.db = kit, folder, folder / "g.db"
        self.processes: list[subprocess.Popen] = []
        with Gallery(self.db, Matcher(kit / "bundle")) as gallery:
            gallery.enroll("alice", [kit / "0.png", kit / "1.png"])
            gallery.enroll("bob", [kit / BOB])

    def hold(self, action: str = "read") -> None:
        """A process that opens the gallery (and revokes bob, with ``action="revoke"``) and keeps
        it open: nothing is checkpointed while it lives."""
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(self.db), str(self.kit / "bundle"), action],
                                   stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        assert process.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        """kill -9 every process holding the gallery (the log and -shm stay behind)."""
        for process in self.processes:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self.processes = []

    def file_alone_has_bob(self) -> bool:
        """What a door reading the main file without its log (immutable=1) would see."""
        with sqlite3.connect(f"{self.db.resolve().as_uri()}?mode=ro&immutable=1", uri=True) as db:
            return ("bob",) in db.execute("SELECT name FROM identities").fetchall()

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.folder.glob("g.db*"))}


# The door's command line as nobody: the interpreter and its packages may be readable by root only
# (a pyenv under /root), so they are loaded first and the privileges dropped (os.setuid) before
# the command touches the gallery.
AS_NOBODY = """
import os, pwd, sys
import edgedml.cli, edgedml.runtime.gallery.gallery, edgedml.runtime.matching.matcher
import edgedml.runtime.gallery.sqlite_store, onnxruntime
nobody = pwd.getpwnam("nobody")
os.setgroups([])
os.setgid(nobody.pw_gid)
os.setuid(nobody.pw_uid)
assert os.getuid() == nobody.pw_uid and os.geteuid() == nobody.pw_uid
edgedml.cli.main(sys.argv[1:], prog_name="edgedml")
"""


def edgedml(*args, as_door_user=False) -> subprocess.CompletedProcess:
    """Run the edgedml command line (as ``nobody`` with ``as_door_user``, when we are root)."""
    start = ["-c", AS_NOBODY] if as_door_user and os.geteuid() == 0 else ["-m", "edgedml.cli"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}
    return subprocess.run([sys.executable, *start, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd="/tmp", timeout=300)


def verify(door: Door, db: Path, picture: str, name: str, as_door_user=False) -> subprocess.CompletedProcess:
    return edgedml("verify", db, name, door.kit / picture, "--model", door.kit / "bundle", "--threshold", THRESHOLD,
                   as_door_user=as_door_user)


def assert_not_enrolled(done):
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "'bob' is not enrolled" in output, output
    assert "ACCEPTED" not in output and "Traceback" not in output


def assert_refused(done):
    """No decision: exit 1, one line naming the write-ahead log; the door stays closed."""
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "write-ahead log" in output, output
    assert "ACCEPTED" not in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.strip()]) == 1, output


def assert_accepted(done):
    assert done.returncode == 0 and "ACCEPTED: alice" in done.stdout, done.stdout + done.stderr


def assert_one_line_refusal(done, message):
    output = done.stdout + done.stderr
    assert done.returncode == 1 and message in output and "Traceback" not in output, output
    assert len([line for line in output.splitlines() if line.strip()]) == 1, output


# --- read-only mounts (root) ------------------------------------------------------------------


@pytest.fixture
def tmpfs(kit):
    """A fresh tmpfs mounted in the kit; unmounted (with any bind mount on it) at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = kit / f"mnt-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"this sandbox forbids mounts: {done.stderr.strip()}")
    mounts = [where]
    yield where, mounts
    for mount in reversed(mounts):
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _mount(args):
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _read_only_view(kit, where, mounts):
    """``where`` seen through a new read-only bind mount (unmounted by the tmpfs fixture)."""
    view = kit / f"ro-{uuid.uuid4().hex[:8]}"
    view.mkdir()
    _mount(["--bind", str(where), str(view)])
    mounts.append(view)
    _mount(["-o", "remount,bind,ro", str(view)])
    return view


def test_the_issue_reproduction_on_a_read_only_bind_mount(kit, tmpfs):
    """enroll alice and bob; a door holds the gallery; `edgedml revoke g.db bob`; the gallery seen
    through a read-only mount while the door still holds it → bob is not enrolled there."""
    where, mounts = tmpfs
    door = Door(kit, where)
    try:
        assert_accepted(verify(door, door.db, ALICE, "alice"))
        assert verify(door, door.db, BOB, "bob").returncode == 0  # bob is let in while enrolled
        door.hold()
        done = edgedml("revoke", door.db, "bob")
        assert done.returncode == 0, done.stderr
        view = _read_only_view(kit, where, mounts)
        assert_not_enrolled(verify(door, view / "g.db", BOB, "bob"))
        assert_accepted(verify(door, view / "g.db", ALICE, "alice"))
    finally:
        door.kill()


def test_a_read_only_mount_reads_a_live_revokers_log(kit, tmpfs):
    """The revoking process is still running (its commit is only in the log, not in the file)."""
    where, mounts = tmpfs
    door = Door(kit, where)
    try:
        door.hold()
        door.hold("revoke")
        assert door.file_alone_has_bob()  # the revocation lives in g.db-wal only
        view = _read_only_view(kit, where, mounts)
        assert_not_enrolled(verify(door, view / "g.db", BOB, "bob"))
        assert_accepted(verify(door, view / "g.db", ALICE, "alice"))
    finally:
        door.kill()


@pytest.mark.parametrize("shm", ["kept", "lost"])
def test_kill_9_of_the_revoker_then_a_read_only_remount(kit, tmpfs, shm):
    """kill -9 leaves the revocation in g.db-wal; the mount is remounted read-only. With the -shm
    the door reads the log; without it SQLite cannot read the log consistently, so the door refuses
    to decide for everyone (it would otherwise decide on the file alone, where bob is enrolled)."""
    where, _ = tmpfs
    door = Door(kit, where)
    door.hold()
    door.hold("revoke")
    door.kill()
    assert door.file_alone_has_bob() and (where / "g.db-wal").stat().st_size > 0
    if shm == "lost":
        (where / "g.db-shm").unlink()
    _mount(["-o", "remount,ro", str(where)])
    before = door.files()
    if shm == "kept":
        assert_not_enrolled(verify(door, door.db, BOB, "bob"))
        assert_accepted(verify(door, door.db, ALICE, "alice"))
    else:
        assert_refused(verify(door, door.db, BOB, "bob"))
        assert_refused(verify(door, door.db, ALICE, "alice"))
    assert door.files() == before


def test_a_revocation_checkpointed_at_close_needs_no_shm_on_a_read_only_remount(kit, tmpfs):
    """`edgedml revoke` closes while a door holds the gallery: its close writes the revocation into
    the file and empties the log. kill -9 of the door, the -shm lost, a read-only remount: the
    empty log holds nothing, so the door decides on the file, where bob is revoked."""
    where, _ = tmpfs
    door = Door(kit, where)
    door.hold()
    assert edgedml("revoke", door.db, "bob").returncode == 0
    door.kill()
    assert not door.file_alone_has_bob() and (where / "g.db-wal").stat().st_size == 0
    (where / "g.db-shm").unlink()
    _mount(["-o", "remount,ro", str(where)])
    assert_not_enrolled(verify(door, door.db, BOB, "bob"))
    assert_accepted(verify(door, door.db, ALICE, "alice"))


def test_enroll_and_revoke_on_a_read_only_mount_say_so_in_one_line(kit, tmpfs):
    where, _ = tmpfs
    door = Door(kit, where)
    _mount(["-o", "remount,ro", str(where)])
    before = door.files()
    assert_one_line_refusal(edgedml("enroll", door.db, "carol", kit / "3.png", "--model", kit / "bundle"),
                            "is read-only")
    assert_one_line_refusal(edgedml("revoke", door.db, "alice"), "is read-only")
    assert door.files() == before


# --- doors without root: a chmod'ed folder, a chmod 444 file -----------------------------------


@pytest.fixture
def door_user_folder(kit):
    """A folder of the test's user, later made read-only; doors run as nobody where we are root."""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody' to drop privileges to")
    folder = kit / f"door-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=0o755)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("revoker", ["running", "killed", "killed, -shm lost"])
def test_a_door_without_root_on_a_read_only_folder(kit, door_user_folder, revoker):
    door = Door(kit, door_user_folder)
    door.hold()
    door.hold("revoke")
    assert door.file_alone_has_bob()
    if revoker != "running":
        door.kill()
    if revoker == "killed, -shm lost":
        (door_user_folder / "g.db-shm").unlink()
    door_user_folder.chmod(0o555)  # nobody (and, without root, we) cannot create a -shm here
    try:
        before = door.files()
        if revoker == "killed, -shm lost":
            assert_refused(verify(door, door.db, BOB, "bob", as_door_user=True))
            assert_refused(verify(door, door.db, ALICE, "alice", as_door_user=True))
        else:
            assert_not_enrolled(verify(door, door.db, BOB, "bob", as_door_user=True))
            assert_accepted(verify(door, door.db, ALICE, "alice", as_door_user=True))
        assert door.files() == before
    finally:
        door.kill()


def test_a_door_without_root_on_a_chmod_444_gallery_in_a_writable_folder(kit, door_user_folder):
    """The door cannot write the file, but can make the -shm it needs: it reads the log."""
    door = Door(kit, door_user_folder)
    door.hold()
    door.hold("revoke")
    door.kill()
    (door_user_folder / "g.db-shm").unlink()
    for path in door_user_folder.iterdir():
        path.chmod(0o444)
    door_user_folder.chmod(0o777)
    assert door.file_alone_has_bob()
    assert_not_enrolled(verify(door, door.db, BOB, "bob", as_door_user=True))
    assert_accepted(verify(door, door.db, ALICE, "alice", as_door_user=True))


def test_enroll_and_revoke_without_root_on_a_read_only_folder_change_nothing(kit, door_user_folder):
    door = Door(kit, door_user_folder)
    door_user_folder.chmod(0o555)
    before = door.files()
    assert_one_line_refusal(edgedml("enroll", door.db, "carol", kit / "3.png", "--model", kit / "bundle",
                                    as_door_user=True), "is read-only")
    assert_one_line_refusal(edgedml("revoke", door.db, "alice", as_door_user=True),
                            "is read-only")
    assert door.files() == before


def test_a_door_reading_a_cleanly_closed_gallery_sees_a_later_revocation(kit, tmpfs):
    """Closed cleanly (no -wal), seen through a read-only mount, where SQLite cannot make a -shm:
    the door reads the file as it is, and a revocation made meanwhile through a writable view
    (closed, so written into the file; or still open, so in a new log) is seen at its next call."""
    from edgedml.runtime.gallery.gallery import GalleryError

    where, mounts = tmpfs
    door = Door(kit, where)
    view = _read_only_view(kit, where, mounts)
    assert not (where / "g.db-wal").exists()
    matcher = Matcher(kit / "bundle")
    with Gallery(view / "g.db", matcher, threshold=float(THRESHOLD)) as reader:
        assert reader.read_only and reader.verify(kit / BOB, "bob").accepted
        with Gallery(door.db, matcher) as writer:  # the last connection: its close writes the file, drops the log
            writer.enroll("carol", [kit / "3.png"])
            assert writer.revoke("bob")
        assert not (where / "g.db-wal").exists()
        with pytest.raises(GalleryError, match="'bob' is not enrolled"):
            reader.verify(kit / BOB, "bob")
        assert reader.identities() == {"alice": 2, "carol": 1}
        with Gallery(door.db, matcher) as writer:  # still open: the revocation is in a new log
            assert writer.revoke("carol")
            assert reader.identities() == {"alice": 2}
        assert reader.verify(kit / ALICE, "alice").accepted


def test_an_immutable_gallery_file_chattr_i(kit):
    """`chattr +i g.db` (root cannot write it either) while the revoker still holds its log."""
    folder = kit / f"immutable-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    door = Door(kit, folder)
    door.hold()
    door.hold("revoke")
    assert door.file_alone_has_bob()
    done = subprocess.run(["chattr", "+i", str(door.db)], capture_output=True, text=True)
    if done.returncode:
        door.kill()
        pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")
    try:
        assert_not_enrolled(verify(door, door.db, BOB, "bob"))
        assert_accepted(verify(door, door.db, ALICE, "alice"))
        assert_one_line_refusal(edgedml("enroll", door.db, "carol", kit / "3.png", "--model", kit / "bundle"),
                                "is read-only")
    finally:
        subprocess.run(["chattr", "-i", str(door.db)], capture_output=True)
        door.kill()


@pytest.mark.parametrize("left", ["nothing (closed cleanly)", "the log and its -shm", "the log alone"])
def test_a_backup_from_a_read_only_mount(kit, tmpfs, left):
    """`gallery backup` of a gallery on a read-only mount: the file as it is when it was closed
    cleanly, the log's commits when the -shm is there, and a refusal when the log cannot be read."""
    from edgedml.runtime.gallery.backup import backup_gallery
    from edgedml.runtime.gallery.store import GalleryError

    where, _ = tmpfs
    door = Door(kit, where)
    if left != "nothing (closed cleanly)":
        door.hold()
        door.hold("revoke")
        door.kill()
        if left == "the log alone":
            (where / "g.db-shm").unlink()
    _mount(["-o", "remount,ro", str(where)])
    target = kit / f"backup-{uuid.uuid4().hex[:8]}.db"
    if left == "the log alone":
        with pytest.raises(GalleryError, match="write-ahead log g.db-wal cannot be read consistently"):
            backup_gallery(door.db, target)
        assert not target.exists()
        return
    done = backup_gallery(door.db, target)
    with sqlite3.connect(f"{target.as_uri()}?mode=ro&immutable=1", uri=True) as db:
        names = sorted(row[0] for row in db.execute("SELECT name FROM identities"))
    assert names == (["alice", "bob"] if left.startswith("nothing") else ["alice"]) and done.identities == len(names)
