"""Faithfulness of the explanations: deletion and insertion curves on the region grid."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHIPPED

from edgedml.cli import main
from edgedml.runtime.assurance.faithfulness import area, cell_masks, genuine_pairs, pair_curves
from edgedml.runtime.inference.image import load_image
from edgedml.runtime.inference.preprocess import to_network_input
from edgedml.runtime.matching.matcher import Matcher


@pytest.fixture(scope="module")
def pair(small_bundle):
    matcher = Matcher(small_bundle[1])
    a, b = (to_network_input(load_image(SHIPPED / n), matcher.spec) for n in ("daisy_1.jpg", "daisy_2.jpg"))
    return matcher, a, b


def test_the_area_and_the_cells():
    assert area(np.ones(5)) == 1.0 and area(np.array([1.0, 0.0])) == 0.5
    assert area(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    masks = cell_masks(4, 96)
    assert masks.shape == (16, 96, 96) and (masks.sum(0) == 1).all()  # every pixel in exactly one cell
    assert masks[5, 24:48, 24:48].all() and masks[5].sum() == 24 * 24


def test_curves_start_and_end_where_they_must(pair):
    matcher, a, b = pair
    found = pair_curves(matcher, a, b)
    assert set(found) == {"evidence", "occlusion", "random"}  # no attention maps in a DIML head
    cells = matcher.grid ** 2
    for c in found.values():
        assert c.deletion.shape == c.insertion.shape == (cells + 1,)
        assert c.deletion[0] == pytest.approx(1.0, abs=1e-4)  # nothing removed: the clean score
        assert c.insertion[-1] == pytest.approx(1.0, abs=1e-4)  # everything restored: the clean score
        assert c.deletion[-1] == pytest.approx(c.insertion[0], abs=1e-5)  # both the empty image
        assert sorted(c.order) == list(range(cells))
    # occlusion removes first the cell whose removal alone costs most: no order drops lower in one step
    assert all(found["occlusion"].deletion[1] <= c.deletion[1] + 1e-5 for c in found.values())
    assert found["occlusion"].ms > found["evidence"].ms  # g² extra embeddings against a sort


def test_the_random_floor_is_reproducible_under_a_seed(pair):
    matcher, a, b = pair
    one, two = (pair_curves(matcher, a, b, methods=("random",), seed=7)["random"] for _ in range(2))
    assert np.array_equal(one.order, two.order) and np.allclose(one.deletion, two.deletion)
    other = pair_curves(matcher, a, b, methods=("random",), seed=8)["random"]
    assert not np.array_equal(one.order, other.order)


def test_genuine_pairs_are_seeded_and_of_one_class(tmp_path):
    for cls, names in (("daisy", ("daisy_1.jpg", "daisy_2.jpg")), ("pansy", ("pansy.jpg",))):
        (tmp_path / cls).mkdir()
        for n in names:
            (tmp_path / cls / n).write_bytes((SHIPPED / n).read_bytes())
    pairs = genuine_pairs(tmp_path, 4, seed=3)  # only 2 distinct pairs: (daisy_1, daisy_2) and its reverse
    assert pairs == genuine_pairs(tmp_path, 4, seed=3) and len(pairs) == len(set(pairs)) == 2
    assert all(a.parent == b.parent and a != b for a, b in pairs)


def test_the_command_reports_curves_costs_and_draws_them(small_bundle, tmp_path):
    data = tmp_path / "data"
    for cls, names in (("daisy", ("daisy_1.jpg", "daisy_2.jpg")), ("pansy", ("pansy.jpg",))):
        (data / cls).mkdir(parents=True)
        for n in names:
            (data / cls / n).write_bytes((SHIPPED / n).read_bytes())
    runner = CliRunner()
    done = runner.invoke(main, ["faithfulness", "--model", str(small_bundle[1]), "--data", str(data), "--pairs", "2",
                                "--json", str(tmp_path / "f.json"), "--plot", str(tmp_path / "f.png")])
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "f.json").read_text())
    assert set(report["methods"]) == {"evidence", "occlusion", "random"} and report["pairs"] == 2
    assert report["methods"]["occlusion"]["extra_ms"] > report["methods"]["evidence"]["extra_ms"]
    assert "deletion AUC" in done.output and cv2.imread(str(tmp_path / "f.png")) is not None
    bad = runner.invoke(main, ["faithfulness", "--model", str(small_bundle[1]), "--data", str(data),
                               "--methods", "evidence,gradcam"])
    assert bad.exit_code == 2 and "gradcam" in bad.output


def test_compare_check_prints_the_pairs_deletion_auc(small_bundle):
    done = CliRunner().invoke(main, ["compare", str(SHIPPED / "daisy_1.jpg"), str(SHIPPED / "daisy_2.jpg"),
                                     "--model", str(small_bundle[1]), "--check"])
    assert done.exit_code == 5, done.output  # uncalibrated: a score and its check, no decision
    assert "faithfulness: deletion AUC" in done.output and "random order" in done.output
    matcher = Matcher(small_bundle[1])
    explained = matcher.explain(SHIPPED / "daisy_1.jpg", SHIPPED / "daisy_2.jpg")
    check = matcher.faithfulness(explained)
    assert set(check) == {"evidence_deletion_auc", "random_deletion_auc", "evidence_insertion_auc"}
    assert check == matcher.faithfulness(explained)  # seeded
