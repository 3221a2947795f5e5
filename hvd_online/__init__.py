"""hvd-online: train TensorFlow models online from Pulsar streams, ranks synchronised by
Horovod ring-allreduce.

What templates and users import, from the top (loaded on first use: `import hvd_online`
alone imports no TensorFlow, so the CLI checks a config in a blink):

>>> import hvd_online
>>> from hvd_online import Schema
>>> Schema.__module__, "ModelTemplate" in hvd_online.__all__
('streams.schema', True)
"""

import importlib
import os
from typing import Any

# TensorFlow's C++ start-up chatter (oneDNN, CPU feature notices) drowns the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: the one version string (pyproject.toml reads it from here)
__version__ = "0.2.0.dev0"

_EXPORTS = {
    "ModelTemplate": "hvd_online.model.template",
    "PER_SAMPLE": "hvd_online.model.template",
    "DynamicEmbedding": "hvd_online.model.dynamic_embedding",
    "LazyAdam": "hvd_online.model.lazy_adam",
    "Schema": "streams.schema",
    "EventSchema": "streams.schema",
    "LabelSchema": "streams.schema",
    "Config": "hvd_online.config",
    "load_config": "hvd_online.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hvd_online' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
