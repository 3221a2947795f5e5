"""What templates and users import: the names at the top of `hvd_online`, the old template
path (working, with a warning naming the new one) and one version string."""

import importlib
import importlib.metadata
import subprocess
import sys
import warnings

import pytest

import hvd_online


def test_the_top_level_exports_what_templates_use():
    from hvd_online import DynamicEmbedding, EventSchema, LabelSchema, ModelTemplate, Schema
    from hvd_online.model.dynamic_embedding import DynamicEmbedding as Where
    from hvd_online.model.template import ModelTemplate as Contract
    from streams.schema import EventSchema as Events

    assert (ModelTemplate, DynamicEmbedding, EventSchema) == (Contract, Where, Events)
    assert Schema.__module__ == LabelSchema.__module__ == "streams.schema"
    for name in hvd_online.__all__:
        assert getattr(hvd_online, name) is not None, name
    assert set(hvd_online.__all__) <= set(dir(hvd_online))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hvd_online.Nope  # noqa: B018


def test_importing_the_package_imports_no_tensorflow():
    """The CLI imports `hvd_online` before it checks a config: TensorFlow (seconds) must wait
    until a name that needs it is used."""
    code = "import sys, hvd_online; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_the_old_template_path_works_and_warns():
    sys.modules.pop("hvd_online.template", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("hvd_online.template")
    assert old.ModelTemplate is hvd_online.ModelTemplate
    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert any("from hvd_online import ModelTemplate" in m for m in messages), messages


def test_one_version_string():
    assert importlib.metadata.version("hvd-online") == hvd_online.__version__
