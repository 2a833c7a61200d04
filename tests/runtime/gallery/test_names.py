"""Identity names and the gallery's arguments (issue 22, items 4, 10 and 13): one spelling per
visible name, nothing that forges a line, an enrolled name extended only on purpose (--add),
decided in the enrollment's transaction, and no password in any message."""

import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import ROOT

from edgedml.cli import main
from edgedml.runtime import Matcher
from edgedml.runtime.gallery.gallery import Gallery, GalleryError
from edgedml.runtime.gallery.names import MAX_NAME_LENGTH, escaped, identity_name
from edgedml.runtime.gallery.url import parse_gallery_url

SAMPLES = ROOT / "samples" / "images"
DAISY_1, DAISY_2, PANSY = SAMPLES / "daisy_1.jpg", SAMPLES / "daisy_2.jpg", SAMPLES / "pansy.jpg"
ZOE_NFC, ZOE_NFD = "Zo\u00eb", "Zoe\u0308"


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return small_bundle[1]


# --- the name rule, pure ----------------------------------------------------------------------

def test_a_visible_name_has_one_spelling():
    assert identity_name(ZOE_NFD) == identity_name(ZOE_NFC) == ZOE_NFC
    assert identity_name("\u212bngstr\u00f6m") == "\u00c5ngstr\u00f6m"  # the Ångström sign is Å
    for name in ("alice", "O'Brien", "Anne-Marie Dupont", "李小龍", "José María", "a" * MAX_NAME_LENGTH):
        assert identity_name(name) == name


@pytest.mark.parametrize("raw, problem", [
    ("bob\nACCEPTED: admin", "control character"),
    ("bob\r", "control character"),
    ("bob\x1b[2K", "control character"),
    ("a\u200db", "invisible format character"),
    ("\u202eadmin", "invisible format character"),
    ("bob\u2028ACCEPTED: admin", "line separator"),
    ("bob\u2029", "paragraph separator"),
    ("a\ue000", "private-use"),
    ("a\u0378", "unassigned"),
    ("Anne\u00a0Marie", "space other than the plain space"),
    ("\u3164", "renders as nothing"),
    ("bob\ufe0f", "renders as nothing"),
    (" bob", "starts or ends with a space"),
    ("bob ", "starts or ends with a space"),
    ("Anne  Marie", "two spaces in a row"),
    ("   ", "only spaces"),
    ("", "non-empty"),
    ("a" * (MAX_NAME_LENGTH + 1), "at most 256"),
    (b"bob", "must be text"),
    (None, "must be text"),
])
def test_a_name_that_could_forge_or_hide_is_refused_in_one_escaped_line(raw, problem):
    with pytest.raises(GalleryError, match=problem) as refused:
        identity_name(raw)
    message = str(refused.value)
    assert message.isprintable() and "\n" not in message and "\u202e" not in message and "\x1b" not in message
    assert len(message) < 400  # a long name is cut in the message


def test_escaped_prints_what_was_stored_on_one_line():
    assert escaped("bob\nACCEPTED: admin") == "bob\\nACCEPTED: admin"
    assert escaped("a\\nb") == "a\\\\nb"  # a typed backslash-n is not a newline shown
    assert escaped("\u202eadmin") == "\\u202eadmin" and escaped(ZOE_NFC) == ZOE_NFC


# --- the gallery's calls ------------------------------------------------------------------------

def test_every_call_that_takes_a_name_normalises_it(bundle, tmp_path):
    with Gallery(tmp_path / "g.db", Matcher(bundle), threshold=0.0) as g:
        g.enroll(ZOE_NFD, [DAISY_1])
        assert g.identities() == {ZOE_NFC: 1}
        assert g.verify(DAISY_2, ZOE_NFD).name == ZOE_NFC == g.verify(DAISY_2, ZOE_NFC).name
        assert g.identify(DAISY_2).name == ZOE_NFC
        assert g.sources(ZOE_NFD) == {str(DAISY_1)}
        with pytest.raises(GalleryError, match="already enrolled"):
            g.enroll(ZOE_NFC, [PANSY])  # the other spelling is the same identity
        assert g.enroll(ZOE_NFC, [DAISY_2], add=True) == 1
        assert g.revoke(ZOE_NFD) and g.identities() == {}
        for call in (lambda: g.verify(DAISY_2, "bob\nACCEPTED: admin"), lambda: g.revoke("a\u200db"),
                     lambda: g.sources("\u202eadmin"), lambda: g.enroll("bob\n", [PANSY])):
            with pytest.raises(GalleryError, match="character"):
                call()
        assert g.identities() == {}


def test_revoking_a_name_removes_every_stored_spelling_of_it(bundle, tmp_path):
    """A gallery enrolled before names were normalised may hold "Zoë" twice; one revoke removes both."""
    with Gallery(tmp_path / "g.db", Matcher(bundle), threshold=0.0) as g:
        for spelling, image in ((ZOE_NFC, DAISY_1), (ZOE_NFD, DAISY_2)):
            f = g.matcher.embed(image)
            g.store.enroll(spelling, f.embedding, f.local, f.marginal, [None])  # as an earlier edgedml did
        g.enroll("pansy", [PANSY])
        assert len(g.identities()) == 3
        assert g.revoke(ZOE_NFC)
        assert g.identities() == {"pansy": 1}
        assert [c.name for c in g.identify(DAISY_2, top_k=5).candidates] == ["pansy"]


def test_an_enrolled_name_takes_more_photos_only_with_add(bundle, tmp_path):
    with Gallery(tmp_path / "g.db", Matcher(bundle), threshold=0.0) as g:
        g.enroll("alice", [DAISY_1])
        with pytest.raises(GalleryError, match="'alice' is already enrolled.*pass --add"):
            g.enroll("alice", [PANSY])  # bob's photo enrolled as alice
        with pytest.raises(GalleryError, match="'carol' is not enrolled.*without --add first"):
            g.enroll("carol", [PANSY], add=True)
        with pytest.raises(GalleryError, match="add must be True or False"):
            g.enroll("alice", [PANSY], add="yes")
        assert g.identities() == {"alice": 1}
        assert g.enroll("alice", [DAISY_2], add=True) == 1 and g.identities() == {"alice": 2}


@pytest.mark.parametrize("rerank", [-5, 0, True, 2.5, "3"])
def test_identify_refuses_a_rerank_that_is_not_a_positive_whole_number(bundle, tmp_path, rerank):
    with Gallery(tmp_path / "g.db", Matcher(bundle), threshold=0.0) as g:
        g.enroll("daisy", [DAISY_1])
        with pytest.raises(GalleryError, match="rerank .* must be a whole number ≥ 1") as refused:
            g.identify(DAISY_2, rerank=rerank)
        assert "\n" not in str(refused.value)
        with pytest.raises(GalleryError, match="rerank"):
            g.identify_faces(DAISY_2, rerank=rerank)
        assert g.identify(DAISY_2, rerank=1).name == "daisy"


@pytest.mark.parametrize("sources", [[], ["one"], ["one", "two", "three"], "ab", [1, 2]])
def test_enroll_needs_one_source_per_image(bundle, tmp_path, sources):
    with Gallery(tmp_path / "g.db", Matcher(bundle), threshold=0.0) as g:
        with pytest.raises(GalleryError, match="source") as refused:
            g.enroll("daisy", [DAISY_1, DAISY_2], sources=sources)
        assert "\n" not in str(refused.value)
        assert g.identities() == {}
        assert g.enroll("daisy", [DAISY_1, DAISY_2], sources=["cam 1", None]) == 2
        assert g.sources("daisy") == {"cam 1"}


def test_cli_enroll_takes_add_for_an_enrolled_name(bundle, tmp_path):
    runner = CliRunner()
    db, model = str(tmp_path / "g.db"), ["--model", str(bundle)]
    assert runner.invoke(main, ["enroll", db, ZOE_NFD, str(DAISY_1), *model]).exit_code == 0
    again = runner.invoke(main, ["enroll", db, ZOE_NFC, str(PANSY), *model])
    assert again.exit_code == 1 and "pass --add" in again.output and len(again.output.strip().splitlines()) == 1
    added = runner.invoke(main, ["enroll", db, ZOE_NFC, str(DAISY_2), *model, "--add"])
    assert added.exit_code == 0 and f"enrolled '{ZOE_NFC}': 1 new templates (2 in all)" in added.output, added.output
    assert runner.invoke(main, ["revoke", db, ZOE_NFD]).exit_code == 0
    with Gallery(db, Matcher(bundle)) as g:
        assert g.identities() == {}


# --- two processes enrolling one new name at once ---------------------------------------------

RACER = """
import sys, time
import numpy as np
from edgedml.runtime.gallery.store import GalleryError, Layout
location, start, layout = sys.argv[1], float(sys.argv[2]), eval(sys.argv[3])
if location.startswith("postgresql"):
    from edgedml.runtime.gallery.postgres_store import PostgresStore as Store
    store = Store(location, layout)
else:
    from edgedml.runtime.gallery.sqlite_store import SQLiteStore as Store
    store = Store(location, layout)
e, (r, d) = layout.embedding_size, layout.local_shape
embedding = np.full((1, e), 1 / np.sqrt(e), np.float32)
time.sleep(max(0.0, start - time.time()))
try:
    store.enroll("alice", embedding, np.ones((1, r, d), np.float32), None, [None])
    print("enrolled")
except GalleryError as exc:
    print("refused" if "already enrolled" in str(exc) else f"error {exc}")
store.close()
"""


def _race(location, layout, racers=4) -> list[str]:
    from edgedml.runtime.gallery.store import Layout

    text = f"Layout({layout.embedding_size}, {tuple(layout.local_shape)}, {layout.embedder!r}, {layout.cropping!r})"
    assert eval(text, {"Layout": Layout}) == layout
    start = time.time() + 6  # every racer has opened its store by then
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(location), str(start), text], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(racers)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in outputs]
    return sorted(out.strip() for out, _ in outputs)


@pytest.mark.slow  # stress: racing processes
def test_processes_enrolling_one_new_name_at_once_create_it_once(bundle, tmp_path):
    with Gallery(tmp_path / "g.db", Matcher(bundle)) as g:
        layout = g.store.layout
    assert _race(tmp_path / "g.db", layout) == ["enrolled", "refused", "refused", "refused"]
    with Gallery(tmp_path / "g.db", Matcher(bundle)) as g:
        assert g.identities() == {"alice": 1}


@pytest.mark.slow  # stress: racing door processes
def test_doors_enrolling_one_new_name_at_once_create_it_once(bundle, fleet_url):
    with Gallery(fleet_url, Matcher(bundle)) as g:
        layout = g.store.layout
        assert _race(fleet_url, layout) == ["enrolled", "refused", "refused", "refused"]
        assert g.identities() == {"alice": 1}
        with pytest.raises(GalleryError, match="already enrolled"):
            g.enroll("alice", [PANSY])
        with pytest.raises(GalleryError, match="not enrolled"):
            g.enroll("bob", [PANSY], add=True)
        assert g.enroll("alice", [DAISY_1], add=True) == 1 and g.identities() == {"alice": 2}
        assert g.identities() == {"alice": 2}


# --- no password in any message ------------------------------------------------------------

SECRET = "s3cr/t@pw"
SHAPES = {  # URL shapes carrying a secret; {host} is a folder with no server
    "userinfo": "postgresql://door:s3cret@/access?host={host}",
    "userinfo, encoded / and @": "postgresql://door:s3cr%2Ft%40pw@/access?host={host}",
    "password key": "postgresql://door@/access?host={host}&password=s3cret",
    "sslpassword key": "postgresql://door@/access?host={host}&sslpassword=s3cret",
    "passfile key": "postgresql://door@/access?host={host}&passfile={host}/s3cret.pgpass",
    "password with a raw /": "postgresql://door:s3cr/t@/access?host={host}",
    "password with a raw @": "postgresql://door:s3cr@t@/access?host={host}",
    "password with a raw / and a port": "postgresql://door:12/s3cret@localhost:5432/access",
    "password with a bad escape": "postgresql://door:%zzs3cret@/access?host={host}",
    "password key with a bad escape": "postgresql://door@/access?host={host}&password=%zzs3cret",
    "a #": "postgresql://door:s3cret@/access?host={host}#x",
    "password with a space": "postgresql://door:s3 cret@/access?host={host}",
    "password with a %00": "postgresql://door:s3cret%00@/access?host={host}",
}
FRAGMENTS = ("s3cret", "s3cr", "zzs3", "12/s", "s3cr%2F", "t%40pw", "t@pw", "/t@", "cret", "3 c")


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("command", ["enroll", "verify", "identify", "revoke"])
def test_no_message_shows_a_password(bundle, tmp_path, shape, command):
    url = SHAPES[shape].format(host=tmp_path)
    model = ["--model", str(bundle)]
    argv = {"enroll": ["enroll", url, "daisy", str(DAISY_1), *model],
            "verify": ["verify", url, "daisy", str(DAISY_2), *model, "--threshold", "0.5"],
            "identify": ["identify", url, str(DAISY_2), *model, "--threshold", "0.5"],
            "revoke": ["revoke", url, "daisy"]}[command]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert ("cannot be reached" in result.output or "the gallery URL does not parse" in result.output), result.output
    shown = result.output.replace(str(tmp_path), "HOST")
    assert not any(fragment in shown for fragment in FRAGMENTS), result.output


def test_the_shown_url_keeps_everything_but_the_secrets():
    shown = parse_gallery_url("postgresql://door:p%40ss@db.example:5432/access?sslmode=require&password=x&"
                              "sslpassword=y&passfile=/etc/z&application_name=gate").shown
    assert shown == ("postgresql://door:***@db.example:5432/access?sslmode=require&password=***&sslpassword=***&"
                     "passfile=***&application_name=gate")
    assert parse_gallery_url("postgresql://h1:5432,h2:5433/db").shown == "postgresql://h1:5432,h2:5433/db"
    assert parse_gallery_url("postgresql://[::1]:5432/db").shown == "postgresql://[::1]:5432/db"


def test_success_messages_show_no_password(bundle, fleet_url, tmp_path):
    """A real server (trust authentication ignores the password): enroll, verify, revoke print
    the URL without the password of the user info or of any secret query key."""
    head, _, rest = fleet_url.partition("://")
    user, _, hosts = rest.partition("@")
    url = f"{head}://{user.split(':')[0]}:{SECRET.replace('/', '%2F').replace('@', '%40')}@{hosts}"
    url += f"{'&' if '?' in url else '?'}sslpassword=s3cret"
    runner = CliRunner()
    model = ["--model", str(bundle)]
    for argv in (["enroll", url, "daisy", str(DAISY_1), *model],
                 ["enroll", url, "daisy", str(DAISY_2), *model, "--add"],
                 ["verify", url, "daisy", str(DAISY_2), *model, "--threshold", "1.0"],
                 ["verify", url, "nobody", str(DAISY_2), *model, "--threshold", "1.0"],
                 ["enroll", url, "daisy", str(PANSY), *model], ["revoke", url, "daisy"], ["revoke", url, "daisy"]):
        result = runner.invoke(main, argv)
        assert result.exit_code in (0, 1, 4) and "Traceback" not in result.output, result.output
        assert not any(f in result.output for f in FRAGMENTS + ("s3cr%2Ft",)), result.output
        assert ":***@" in result.output or "ACCEPTED" in result.output, result.output
