"""Deprecated: the template contract moved to `hvd_online.model.template` in 0.1.0's rooms
refactor; import it from the top: `from hvd_online import ModelTemplate`. This module keeps
`from hvd_online.template import ModelTemplate` working, with a DeprecationWarning, until
0.3.0."""

import warnings

from hvd_online.model.template import PER_SAMPLE, ModelTemplate

warnings.warn("hvd_online.template is deprecated and goes in 0.3.0: use "
              "`from hvd_online import ModelTemplate` (or PER_SAMPLE)", DeprecationWarning,
              stacklevel=2)

__all__ = ["PER_SAMPLE", "ModelTemplate"]
