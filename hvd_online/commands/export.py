"""`hvd-online export`: a checkpoint's weights as a model for serving.

`OUT.keras` writes a Keras file; any other path a TensorFlow SavedModel directory
(for TF-Serving).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hvd_online.config import Config
from hvd_online.errors import HvdOnlineError
from hvd_online.model.saved_model import write_saved_model
from hvd_online.model.template import build_model, load_template
from hvd_online.state.checkpoint import load_checkpoint, load_latest_checkpoint
from hvd_online.state.run_dir import RunLayout

log = logging.getLogger(__name__)


def export_model(config: Config, out: Path, checkpoint: Path | None = None) -> Path:
    root = RunLayout.of(config).checkpoints
    found = load_checkpoint(checkpoint) if checkpoint else load_latest_checkpoint(root)
    if found is None:
        msg = f"no valid checkpoint under {root}: train first, or pass --checkpoint DIR"
        raise HvdOnlineError(msg)
    template = load_template(config.model.template, config.model.params)
    model = build_model(template, config.model.pretrained)
    model.set_weights(found.weights)
    if out.suffix == ".keras":
        model.save(out)
    else:
        write_saved_model(model, template, out)  # the same signature as serving versions
    log.info("exported %s (step %s) to %s", found.path, found.state.step, out)
    return out
