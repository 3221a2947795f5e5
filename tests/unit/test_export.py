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
