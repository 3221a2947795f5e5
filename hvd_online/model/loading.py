"""Load user code named in a config: "path/to/file.py:Name" or "package.module:Name"."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from hvd_online.errors import TemplateError


def load_object(spec: str) -> Any:
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        msg = f"{spec!r} must look like 'path/to/file.py:Name' or 'package.module:Name'"
        raise TemplateError(msg)
    if path.endswith(".py"):
        file = Path(path)
        if not file.is_file():
            msg = f"{file} does not exist (named by {spec!r})"
            raise TemplateError(msg)
        module_name = f"hvd_online_user_{file.stem}_{abs(hash(str(file.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(path)
        except ImportError as err:
            msg = f"cannot import {path!r} (named by {spec!r}): {err}"
            raise TemplateError(msg) from err
    try:
        return getattr(module, name)
    except AttributeError:
        msg = f"{path} has no {name!r} (named by {spec!r})"
        raise TemplateError(msg) from None
