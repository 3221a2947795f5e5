"""A checkpoint exported as .keras is a valid `model.pretrained` starting point."""

import numpy as np

from hvd_online.commands.export import export_model
from hvd_online.config import load_config_text
from hvd_online.model.template import build_model, load_template
from hvd_online.state.checkpoint import save_checkpoint
from hvd_online.state.run_state import RunState
from tests.integration.harness import MLP_TEMPLATE


def test_export_then_start_from_pretrained(tmp_path):
    config = load_config_text(
        f'[model]\ntemplate = "{MLP_TEMPLATE}:MLPRegression"\nparams = {{ hidden = 8 }}\n'
        f'[run]\ndir = "{tmp_path}"\n')
    template = load_template(config.model.template, config.model.params)
    weights = [np.random.default_rng(i).normal(size=w.shape).astype("f4")
               for i, w in enumerate(template.build_model().get_weights())]
    save_checkpoint(tmp_path / "checkpoints", weights, [], RunState(step=5))
    out = export_model(config, tmp_path / "model.keras")
    restored = build_model(template, pretrained=str(out))
    for got, want in zip(restored.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)


def test_export_and_serving_versions_share_one_signature(tmp_path):
    import tensorflow as tf

    from hvd_online.observers.serving import write_version

    config = load_config_text(
        f'[model]\ntemplate = "{MLP_TEMPLATE}:MLPRegression"\nparams = {{ hidden = 8 }}\n'
        f'[run]\ndir = "{tmp_path}"\n')
    template = load_template(config.model.template, config.model.params)
    model = template.build_model()
    save_checkpoint(tmp_path / "checkpoints", model.get_weights(), [], RunState(step=5))
    exported = export_model(config, tmp_path / "exported")
    version = write_version(model, template, tmp_path / "serving" / "model", 5, keep=2)
    signatures = [tf.saved_model.load(str(p)).signatures["serving_default"]
                  for p in (exported, version)]
    inputs = [s.structured_input_signature for s in signatures]
    assert inputs[0] == inputs[1]
    assert list(inputs[0][1]) == [template.schema.features], "the input is named for clients"
    x = np.ones((2, *template.schema.feature_shape), "f4")
    outputs = [next(iter(s(**{template.schema.features: tf.constant(x)}).values())).numpy()
               for s in signatures]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)
