"""TF-Serving versions: atomic, pruned, reconciled on resume, and answering like the predict
route for the same weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from console.app import create_app
from console.predictor import Predictor
from console.state import ConsoleState
from hvd_online.observers.serving import (
    ServingExporter,
    remove_versions_after,
    versions,
    write_version,
)
from hvd_online.training.reports import StepReport
from streams.schema import Schema


class Template:
    schema = Schema.from_fields([("id", "<i8"), ("x", "<f4", (3,)), ("y", "<f4")],
                                features="x", label="y", key="id")


def make_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                             keras.layers.Dense(2)])


def serve(path, x: np.ndarray) -> np.ndarray:
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["x"], "the template's feature"
    (out,) = signature(x=tf.constant(x)).values()
    return out.numpy()


def test_a_version_answers_like_the_predict_route_for_the_same_step(tmp_path):
    trained = make_model(1)
    predictor = Predictor(make_model(2), Template.schema)
    predictor.publish(7, trained.get_weights())
    client = create_app(ConsoleState({}), predictor, lambda _: None, "t").app.test_client()
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    reply = client.post("/v1/models/model:predict", json={"instances": x.tolist()}).get_json()
    assert reply["model_version"] == "7"

    exporter_copy = make_model(3)
    exporter_copy.set_weights(trained.get_weights())
    path = write_version(exporter_copy, Template, tmp_path / "model", 7, keep=5)
    assert path == tmp_path / "model" / "7"
    np.testing.assert_allclose(serve(path, x), np.asarray(reply["predictions"]), rtol=1e-5,
                               atol=1e-6)


def test_versions_are_renamed_into_place_and_pruned(tmp_path):
    base = tmp_path / "model"
    model = make_model(1)
    for step in (3, 9, 12, 20):
        write_version(model, Template, base, step, keep=3)
    assert versions(base) == [9, 12, 20]
    assert sorted(p.name for p in base.iterdir()) == ["12", "20", "9"], "nothing half-written"
    assert not list((tmp_path / ".staging").iterdir()), "staging left empty"
    write_version(model, Template, base, 20, keep=3)  # the same step twice: kept as it is
    assert versions(base) == [9, 12, 20]


def test_a_restart_removes_versions_its_checkpoint_rolled_back(tmp_path):
    base = tmp_path / "model"
    for step in (5, 10, 15):
        (base / str(step)).mkdir(parents=True)
    (base / "notes").mkdir()
    assert remove_versions_after(base, 10) == [15]
    assert versions(base) == [5, 10]
    assert (base / "notes").is_dir(), "only numbered versions are ours"


def report(step: int, **extra) -> StepReport:
    return StepReport(step=step, count=8, samples_total=8 * step, loss=0.1, metric=0.1,
                      applied=True, elapsed_s=1.0, samples_per_s=8.0, **extra)


@pytest.mark.parametrize("every_s", [0.0, 3600.0])
def test_the_exporter_writes_at_checkpoints_off_the_calling_thread(tmp_path, every_s):
    trained = make_model(1)
    exporter = ServingExporter(tmp_path / "model", Template, make_model(2), trained.get_weights,
                               every_s=every_s, keep=5)
    exporter(report(1))
    exporter(report(2, checkpoint="/ckpt-2"))
    exporter(report(3))
    exporter(report(4, checkpoint="/ckpt-4", stopped="stop"))
    exporter.close()
    assert versions(tmp_path / "model")[-1] == 4, "the final checkpoint's version is written"
    assert set(versions(tmp_path / "model")) <= {2, 4}
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(serve(tmp_path / "model" / "4", x), trained(x).numpy(),
                               rtol=1e-5)
