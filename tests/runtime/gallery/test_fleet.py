"""The fleet gallery against a real PostgreSQL with pgvector (started from the pgserver wheel):
the SQLite gallery's API, doors sharing one store, a door killed mid-enrollment, a server
outage, four doors at once for 30 seconds, and bad input."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import ROOT, TESTS, kill_mid_enrollment, start_postgres

from edgedml.cli import EXIT_REJECTED, main
from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery, GalleryError, GalleryUnavailable
from edgedml.runtime.gallery.store import Layout

SAMPLES = ROOT / "samples" / "images"
DAISY_1, DAISY_2, PANSY = SAMPLES / "daisy_1.jpg", SAMPLES / "daisy_2.jpg", SAMPLES / "pansy.jpg"
DOOR = TESTS / "fleet_door.py"


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return small_bundle[1]


def test_the_fleet_gallery_has_the_file_gallerys_api_and_doors_share_it(bundle, fleet_url, tmp_path):
    matcher = Matcher(bundle)
    with Gallery(fleet_url, matcher, threshold=0.0, door="reception") as reception, \
            Gallery(fleet_url, matcher, threshold=0.0, door="lab") as lab, \
            Gallery(tmp_path / "door.db", matcher, threshold=0.0) as local:
        for g in (reception, local):
            assert g.enroll("daisy", [DAISY_1]) == 1
            g.enroll("pansy", [PANSY])
        assert lab.identities() == local.identities() == {"daisy": 1, "pansy": 1}  # enrolled at reception
        for kind in ("verify", "identify"):
            fleet = lab.verify(DAISY_2, "daisy") if kind == "verify" else lab.identify(DAISY_2, top_k=2)
            file = local.verify(DAISY_2, "daisy") if kind == "verify" else local.identify(DAISY_2, top_k=2)
            assert fleet.score == pytest.approx(file.score, abs=1e-5)  # the same templates, exactly
            assert [c.name for c in fleet.candidates] == [c.name for c in file.candidates]
            assert fleet.candidates[0].source == str(DAISY_1)
        assert lab.verify(DAISY_2, "daisy").score > lab.verify(DAISY_2, "pansy").score
        row = lab.log_decision("verify", lab.verify(DAISY_2, "daisy"), claimed="daisy", evidence="why.png")
        reception.log_decision("identify", reception.identify(PANSY))
        logged = reception.decisions()
        assert [(d.door, d.kind) for d in logged] == [("reception", "identify"), ("lab", "verify")]
        assert [d.kind for d in lab.decisions(door="lab")] == ["verify"]
        assert logged[1].id == row and logged[1].evidence == "why.png" and logged[1].accepted is True
        assert lab.sources("daisy") == {str(DAISY_1)}
        assert reception.revoke("pansy") and not reception.revoke("pansy")  # revoked at reception ...
        with pytest.raises(GalleryError, match="not enrolled"):
            lab.verify(DAISY_2, "pansy")  # ... is unknown at the lab at once
        assert [c.name for c in lab.identify(PANSY, top_k=5).candidates] == ["daisy"]
    with Gallery(fleet_url, matcher) as again:  # persisted; this bundle is not calibrated
        assert again.identities() == {"daisy": 1}
        with pytest.raises(GalleryError, match="calibrate"):
            again.identify(DAISY_2)


def test_templates_are_vector_columns_with_an_hnsw_index_and_identify_uses_it(bundle, fleet_url):
    import psycopg

    with Gallery(fleet_url, Matcher(bundle), threshold=0.0) as g:
        g.enroll("daisy", [DAISY_1, DAISY_2])
        with psycopg.connect(fleet_url) as db:
            kind = db.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                              "attrelid = 'edgedml.templates'::regclass AND attname = 'embedding'").fetchone()[0]
            assert kind == f"vector({g.store.layout.embedding_size})"
            index = db.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'templates_embedding'").fetchone()[0]
            assert "hnsw" in index and "vector_ip_ops" in index
            db.execute("SET enable_seqscan = off")  # a 2-row table would be scanned otherwise
            plan = "\n".join(r[0] for r in db.execute(
                "EXPLAIN SELECT id FROM edgedml.templates ORDER BY embedding <#> "
                "(SELECT embedding FROM edgedml.templates LIMIT 1) LIMIT 5").fetchall())
            assert "templates_embedding" in plan
        near = g.store.nearest(g.matcher.embed(DAISY_2).embedding[0], 5)
        assert list(near.names) == ["daisy", "daisy"] and near.local.shape[1:] == g.store.layout.local_shape


def test_a_door_killed_mid_enrollment_leaves_nothing_half_written(bundle, fleet_url):
    with Gallery(fleet_url, Matcher(bundle)) as g:
        g.enroll("daisy", [DAISY_1])
    # the identity and both templates sent, not committed
    kill_mid_enrollment(fleet_url, bundle, ("psycopg", "Cursor", "executemany"), [PANSY, DAISY_2])
    with Gallery(fleet_url, Matcher(bundle), threshold=0.0) as g:
        assert g.identities() == {"daisy": 1}
        import psycopg

        with psycopg.connect(fleet_url) as db:
            assert db.execute("SELECT COUNT(*) FROM edgedml.templates").fetchone()[0] == 1
            assert db.execute("SELECT COUNT(*) FROM edgedml.identities").fetchone()[0] == 1
        assert g.enroll("pansy", [PANSY]) == 1  # the dead transaction holds no lock on the name
        assert g.identities() == {"daisy": 1, "pansy": 1}


@pytest.mark.slow  # stress: four door processes for 30 s
def test_four_doors_for_30_seconds_leave_exactly_what_committed(bundle, fleet_url, tmp_path):
    Gallery(fleet_url, Matcher(bundle)).close()  # the schema; the doors also race to create it in the next test
    doors = [f"door{i}" for i in range(4)]
    images = [str(p) for p in (DAISY_1, DAISY_2, PANSY)]
    procs = [subprocess.Popen([sys.executable, str(DOOR), fleet_url, str(bundle), door, "30", str(tmp_path / door),
                               *images], stderr=subprocess.PIPE, text=True) for door in doors]
    for proc in procs:
        assert proc.wait(timeout=180) == 0, proc.stderr.read()[-2000:]
    enrolled, revoked, logged, failed = set(), set(), {}, []
    for door in doors:
        lines = (tmp_path / door).read_text().splitlines()
        assert lines[-1] == "done"
        for line in lines[:-1]:
            what, _, rest = line.partition(" ")
            if what == "enrolled":
                enrolled.add(rest)
            elif what == "revoked":
                revoked.add(rest)
            elif what == "logged":
                logged.setdefault(door, []).append(int(rest))  # int("None") fails: a lost row
            else:
                failed.append(line)
    assert revoked <= enrolled and len(enrolled) > 40 and len(revoked) > 5
    assert all("no enrolled identities" in line for line in failed), failed[:3]  # only before the first enroll
    with Gallery(fleet_url, Matcher(bundle)) as g:
        assert g.identities() == {name: 1 for name in sorted(enrolled - revoked)}
        import psycopg

        with psycopg.connect(fleet_url) as db:
            rows = db.execute("SELECT door, id FROM edgedml.decisions").fetchall()
            orphans = db.execute("SELECT COUNT(*) FROM edgedml.templates t LEFT JOIN edgedml.identities i "
                                 "ON i.id = t.identity_id WHERE i.id IS NULL").fetchone()[0]
    assert orphans == 0
    for door in doors:
        assert sorted(r[1] for r in rows if r[0] == door) == sorted(logged[door])
    assert len(rows) == sum(len(v) for v in logged.values()) > 100


def test_doors_starting_together_on_a_new_database_create_one_schema(bundle, fleet_url):
    code = f"from edgedml.runtime import Matcher\nfrom edgedml.runtime.gallery.gallery import Gallery\n" \
           f"Gallery({fleet_url!r}, Matcher({str(bundle)!r})).close()\n"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs), [p.stderr.read()[-500:] for p in procs]
    import psycopg

    with psycopg.connect(fleet_url) as db:
        assert db.execute("SELECT key FROM edgedml.meta ORDER BY key").fetchall() == [
            ("detector",), ("embedder_sha256",), ("local_shape",)]


@pytest.mark.slow  # outage: a server of its own, stopped and restarted
def test_a_server_outage_fails_each_call_in_one_line_and_the_door_resumes(bundle, tmp_path, caplog):
    server = start_postgres(tmp_path / "pgdata")  # its own server: this test stops it
    try:
        url = server.get_uri()
        with Gallery(url, Matcher(bundle), threshold=0.0, door="lab") as g:
            g.enroll("daisy", [DAISY_1])
            before = g.verify(DAISY_2, "daisy")
            pid = server.get_pid()
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            _wait_gone(pid)
            for call in (lambda: g.verify(DAISY_2, "daisy"), lambda: g.identify(DAISY_2),
                         lambda: g.enroll("pansy", [PANSY]), lambda: g.remove("daisy")):
                with pytest.raises(GalleryUnavailable, match="cannot be reached.*next call reconnects") as err:
                    call()
                assert "\n" not in str(err.value)
            with caplog.at_level("WARNING", logger="edgedml"):
                assert g.log_decision("verify", before, claimed="daisy") is None
            assert "not logged" in caplog.text
            result = CliRunner().invoke(main, ["verify", url, "daisy", str(DAISY_2), "--model", str(bundle),
                                               "--threshold", "0"])
            assert result.exit_code == 1 and "cannot be reached" in result.output
            server.ensure_postgres_running()  # the server is back, at the same address
            assert server.get_uri() == url
            again = g.verify(DAISY_2, "daisy")  # the same Gallery reconnects by itself
            assert again.score == pytest.approx(before.score, abs=1e-6)
            assert g.log_decision("verify", again, claimed="daisy") is not None
            assert g.identities() == {"daisy": 1}  # the failed enroll and revoke wrote nothing
    finally:
        server.cleanup()


@pytest.mark.slow  # outage: a door process through a server restart (~30 s)
def test_doors_running_through_an_outage_fail_in_one_line_and_resume(bundle, tmp_path):
    server = start_postgres(tmp_path / "pgdata")
    try:
        url = server.get_uri()
        Gallery(url, Matcher(bundle)).close()
        journal = tmp_path / "door"
        door = subprocess.Popen([sys.executable, str(DOOR), url, str(bundle), "door0", "24", str(journal),
                                 str(DAISY_1), str(PANSY)], stderr=subprocess.PIPE, text=True)
        time.sleep(8)
        pid = server.get_pid()
        os.kill(pid, signal.SIGINT)  # the server stops while the door works
        _wait_gone(pid)
        time.sleep(5)
        server.ensure_postgres_running()
        assert door.wait(timeout=120) == 0, door.stderr.read()[-2000:]  # no traceback: it ran to the end
        lines = journal.read_text().splitlines()
        assert lines[-1] == "done"
        down = [i for i, line in enumerate(lines) if line.startswith("failed") and "cannot be reached" in line]
        assert down, "the door never noticed the outage"
        before, after = lines[:down[0]], lines[down[-1] + 1:-1]
        assert any(line.startswith("enrolled") for line in before)
        assert any(line.startswith("enrolled") for line in after)
        assert any(line.startswith("logged") and line != "logged None" for line in after)  # it resumed
        enrolled = {line.split()[1] for line in lines if line.startswith("enrolled")}
        revoked = {line.split()[1] for line in lines if line.startswith("revoked")}
        unknown = {line.split()[2] for line in lines if line.startswith(("failed enroll", "failed revoke"))}
        with Gallery(url, Matcher(bundle)) as g:  # what returned is there; only unacknowledged calls may differ
            held = set(g.identities())
        assert (enrolled - revoked - unknown) <= held <= (enrolled - revoked) | unknown
    finally:
        server.cleanup()


def _wait_gone(pid, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("the server did not stop")


def test_bad_input_gets_one_line(bundle, fleet_url, tmp_path):
    matcher = Matcher(bundle)
    with Gallery(fleet_url, matcher, threshold=0.0) as g:
        g.enroll("daisy", [DAISY_1])
        with pytest.raises(GalleryError, match="'nobody' is not enrolled"):
            g.verify(DAISY_2, "nobody")
        short = matcher.embed(DAISY_2)
        short.embedding = short.embedding[:, :16]
        with pytest.raises(GalleryError, match="query features have shapes"):
            g.identify(short)
        layout = g.store.layout
    from edgedml.runtime.gallery.postgres_store import PostgresStore

    narrow = Layout(64, layout.local_shape, layout.embedder, layout.cropping)
    sizes = f"stores embeddings of size {layout.embedding_size} and this matcher's have 64"
    with pytest.raises(GalleryError, match=sizes):
        PostgresStore(fleet_url, narrow)
    other = Layout(layout.embedding_size, layout.local_shape, "0" * 64, layout.cropping)
    with pytest.raises(GalleryError, match="another model"):
        PostgresStore(fleet_url, other)
    with pytest.raises(GalleryUnavailable, match="cannot be reached"):
        Gallery(f"postgresql://nobody@/nothing?host={tmp_path}", matcher)  # no server there
    with pytest.raises(GalleryError, match="password|authentication|does not exist"):
        Gallery(fleet_url.replace("/fleet_", "/missing_"), matcher)


def test_the_cli_takes_a_url_wherever_it_takes_a_file(bundle, fleet_url):
    runner = CliRunner()
    model = ["--model", str(bundle)]
    for name, image in (("daisy", DAISY_1), ("pansy", PANSY)):
        result = runner.invoke(main, ["enroll", fleet_url, name, str(image), *model])
        assert result.exit_code == 0 and "enrolled" in result.output, result.output
    ok = runner.invoke(main, ["verify", fleet_url, "daisy", str(DAISY_2), *model,
                              "--threshold", "1.0", "--door", "gate"])
    assert ok.exit_code == 0 and "ACCEPTED" in ok.output
    who = runner.invoke(main, ["identify", fleet_url, str(DAISY_2), *model, "--threshold", "1.99"])
    assert who.exit_code == EXIT_REJECTED
    assert runner.invoke(main, ["revoke", fleet_url, "pansy"]).exit_code == 0
    gone = runner.invoke(main, ["revoke", fleet_url, "pansy"])
    assert gone.exit_code == 1 and "not enrolled" in gone.output
    with Gallery(fleet_url, Matcher(bundle)) as g:
        assert g.identities() == {"daisy": 1}
        assert [(d.kind, d.door) for d in g.decisions()][::-1][:1] == [("verify", "gate")]


def test_messages_never_show_the_password(bundle, tmp_path):
    pytest.importorskip("psycopg", reason="psycopg is in the fleet extra: pip install -e '.[dev]'")
    with pytest.raises(GalleryUnavailable) as err:
        Gallery(f"postgresql://door:s3cret@/access?host={tmp_path}", Matcher(bundle))
    assert "s3cret" not in str(err.value) and "door:***@" in str(err.value)
