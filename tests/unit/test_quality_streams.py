"""The quality benchmark's streams (benchmarks/quality_streams.py) and the classifier template
they feed (examples/drift/model.py): records of the declared shape and classes, one-hot
attributes, the gradual drift's mix and the label noise."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from benchmarks import quality_streams
from benchmarks.quality_streams import GRADUAL_WIDTH, STREAMS, stream_rows
from examples.drift.model import StreamClassifier
from hvd_online.errors import TemplateError
from hvd_online.model.template import load_template

pytest.importorskip("river")

MODEL = f"{Path(__file__).parents[2] / 'examples/drift/model.py'}:StreamClassifier"


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_records_have_the_declared_shape_and_classes(name):
    stream = STREAMS[name]
    schema = StreamClassifier(stream.features, classes=stream.classes).schema
    rows = stream_rows(schema, name, 4000, drift_at=2000 if stream.drift_at else None)
    assert rows["x"].shape == (4000, stream.features)
    assert np.array_equal(rows["id"], np.arange(4000))
    assert set(np.unique(rows["y"])) == set(range(stream.classes)), "every class, no other"
    if name != "rbf":  # RandomRBF's Gaussians spill over the centroids' [0, 1]
        assert rows["x"].min() >= -1 and rows["x"].max() <= 1
    again = stream_rows(schema, name, 4000, drift_at=2000 if stream.drift_at else None)
    assert np.array_equal(rows, again), "the same seed gives the same records"


@pytest.mark.parametrize("name, groups", [("stagger", [3, 3, 3]),
                                          ("agrawal", [5, 20, 9])])
def test_categorical_attributes_are_one_hot(name, groups):
    stream = STREAMS[name]
    rows = stream_rows(StreamClassifier(stream.features).schema, name, 2000, drift_at=1000)
    hot = rows["x"][:, stream.features - sum(groups):]
    assert set(np.unique(hot)) == {0.0, 1.0}
    for block in np.split(hot, np.cumsum(groups)[:-1], axis=1):
        assert np.all(block.sum(axis=1) == 1), "one value per attribute"


def test_a_gradual_drift_moves_from_the_old_concept_to_the_new_along_a_sigmoid():
    drift_at = 20000
    mixed = quality_streams._gradual(itertools.repeat(("old", 0)), itertools.repeat(("new", 1)),
                                     drift_at, seed=0)
    new = np.array([y for _, y in itertools.islice(mixed, drift_at + 4 * GRADUAL_WIDTH)])
    centre = drift_at + GRADUAL_WIDTH
    assert new[: drift_at].mean() < 0.01, "the old concept up to the drift point"
    assert 0.4 < new[centre - 500: centre + 500].mean() < 0.6
    assert new[drift_at + 3 * GRADUAL_WIDTH:].mean() > 0.99


def test_label_noise_flips_the_given_share():
    clean = [({}, i % 2 == 0) for i in range(20000)]
    noisy = list(quality_streams._flipped(clean, 0.05, seed=0))
    flipped = np.mean([a[1] != b[1] for a, b in zip(clean, noisy, strict=True)])
    assert 0.04 < flipped < 0.06


def test_the_classifier_has_a_logit_per_class_and_refuses_one_class():
    binary = load_template(MODEL, {"inputs": 3})
    assert (binary.loss, binary.metric) == ("binary_crossentropy", "binary_accuracy")
    assert binary.build_model().output_shape == (None, 1)
    ten = load_template(MODEL, {"inputs": 3, "classes": 10})
    assert (ten.loss, ten.metric) == ("sparse_categorical_crossentropy", "accuracy")
    outputs = ten.build_model()(np.zeros((4, 3), "f4"))
    assert outputs.shape == (4, 10)
    assert np.asarray(ten.per_sample_loss(np.array([0, 1, 2, 9], "f4"), outputs)).shape == (4,)
    with pytest.raises(TemplateError, match="classes must be 2 or more"):
        load_template(MODEL, {"inputs": 3, "classes": 1})
