"""`hvd-online check` refuses a bad config before anything starts: each message names the key
and the fix, the exit code is the documented permanent one, and nothing heavy was imported
(no TensorFlow, Horovod or Pulsar client: so no rank, no broker)."""

import json
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hvd_online.commands.check import as_toml
from hvd_online.config import load_config, load_config_text
from hvd_online.errors import CONFIG_ERROR_EXIT

REPO = Path(__file__).resolve().parents[2]
MLP = REPO / "examples" / "mlp"
GOOD = (f'[model]\ntemplate = "{MLP / "model.py"}:MLPRegression"\n'
        'params = {inputs = 16, hidden = 8, layers = 1}\n'
        '[stream]\ntopic = "t"\npartitions = 2\n')
PH = '[drift]\ndetector = "page_hinkley"\n'

#: (what is wrong, appended to a good config, what the message must say)
BAD = [
    ("value near miss", '[drift]\ndetector = "adwin"\naction = "challanger"\n',
     ["'drift.action' is 'challanger'", "did you mean 'challenger'?"]),
    ("unknown key near miss", "[window]\nbatch_siz = 3\n",
     ["unknown key 'window.batch_siz'", "did you mean 'window.batch_size'?"]),
    ("unknown section near miss", "[trian]\nseed = 1\n",
     ["unknown section [trian]", "did you mean 'train'?"]),
    ("codec near miss", '[join]\nevents_topic = "e"\nlabels_topic = "l"\nevents_codec = "jsn"\n',
     ["'join.events_codec' is 'jsn'", "did you mean 'json'?"]),
    ("detector near miss", '[drift]\ndetector = "adwn"\n',
     ["'drift.detector' is 'adwn'", "did you mean 'adwin'?"]),
    ("zero learning rate", "[train]\nlearning_rate = 0\n",
     ["'train.learning_rate' is 0.0", "must be > 0"]),
    ("empty batches", "[window]\nbatch_size = 0\n", ["'window.batch_size' is 0", ">= 1"]),
    ("port out of range", "[console]\nport = 70000\n",
     ["'console.port' is 70000", "must be <= 65535"]),
    ("negative join window", '[join]\nwindow_s = -1\n', ["'join.window_s' is -1.0", "> 0"]),
    ("warning above one", PH + "warning = 2\n", ["'drift.warning' is 2.0", "<= 1"]),
    ("wrong type", '[train]\nmax_steps = "many"\n', ["'train.max_steps' must be int"]),
    ("local SGD with drift", PH + "[train]\nsync_every = 4\n",
     ["train.sync_every = 4", "set train.sync_every = 1"]),
    ("events without labels", '[join]\nevents_topic = "e"\n',
     ["join.labels_topic is empty", "name the labels topic"]),
    ("one topic for both", '[join]\nevents_topic = "x"\nlabels_topic = "x"\n',
     ["join.events_topic and join.labels_topic", "topics of their own"]),
    ("expiry label never used",
     '[join]\nevents_topic = "e"\nlabels_topic = "l"\non_expiry = "drop"\nexpiry_label = 1.0\n',
     ["join.expiry_label = 1", 'set join.on_expiry = "label"']),
    ("challenger that cannot win", PH + 'action = "challenger"\nchallenger_patience = 100\n',
     ["drift.challenger_patience (100)", "raise the patience"]),
    ("action without detector", '[drift]\naction = "boost"\n',
     ["drift.action = 'boost' needs a drift.detector"]),
    ("not a Pulsar URL", '[stream]\nurl = "http://broker:8080"\n',
     ["stream.url 'http://broker:8080'", "pulsar://HOST:6650"]),
    ("model name with a space", '[console]\nmodel_name = "my model"\n',
     ["console.model_name 'my model'", "path segment"]),
    ("template file missing", '[model]\ntemplate = "nowhere.py:Model"\n',
     ["model.template: file", "nowhere.py does not exist"]),
]

CHECK = """
import json, sys
from hvd_online.cli import main
rc = main(["check", sys.argv[1]])
heavy = sorted(m for m in ("tensorflow", "keras", "horovod", "pulsar") if m in sys.modules)
print("RESULT " + json.dumps({"rc": rc, "heavy": heavy}))
"""


def run_check(path: Path) -> tuple[dict, str]:
    """(the check's exit code, seconds from process start to exit, heavy modules), output"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHECK, str(path)], capture_output=True,
                          text=True, timeout=120, cwd=path.parent)
    result = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    found = json.loads(result.removeprefix("RESULT "))
    found["s"] = time.monotonic() - started
    return found, done.stdout + done.stderr


def merged(extra: str) -> str:
    """The good config with `extra`'s keys laid over it (TOML forbids a key twice)."""
    data = tomllib.loads(GOOD)
    for section, values in tomllib.loads(extra).items():
        data.setdefault(section, {}).update(values)
    return "".join(f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" if not isinstance(
        v, dict) else f"{k} = {{{', '.join(f'{a} = {b}' for a, b in v.items())}}}\n"
        for k, v in values.items()) for section, values in data.items())


def test_bad_configs_are_refused_naming_key_and_fix_without_starting_anything(tmp_path):
    assert len(BAD) >= 15
    paths = []
    for i, (_, extra, _) in enumerate(BAD):
        path = tmp_path / f"bad-{i}.toml"
        path.write_text(merged(extra) + f'[run]\ndir = "{tmp_path / f"run-{i}"}"\n')
        paths.append(path)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run_check, paths))
    for (what, _, expected), (result, output) in zip(BAD, results, strict=True):
        assert result["rc"] == CONFIG_ERROR_EXIT, (what, output)
        for text in expected:
            assert text in output, (what, text, output)
        assert result["heavy"] == [], (what, "refused before TensorFlow, Horovod or Pulsar")
    assert not any(tmp_path.glob("run-*")), "no run directory, so no broker data, was made"
    seconds = sorted(r["s"] for r, _ in results)
    print(f"check refused {len(BAD)} bad configs: median {seconds[len(seconds) // 2]:.2f} s, "
          f"max {seconds[-1]:.2f} s")


def test_a_good_config_prints_a_resolved_config_that_loads_back(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    result, output = run_check(path)
    assert result["rc"] == 0, output
    assert "# config OK" in output and "keras" in result["heavy"], "the template was loaded"
    printed = output[output.index("[model]"):output.index("# config OK")]
    assert load_config_text(printed) == load_config(path)


def test_several_problems_are_reported_together():
    with pytest.raises(Exception) as info:
        load_config_text("[train]\nlearning_rate = -1\nlog_every = 0\n[window]\nbatch_size = 0\n")
    message = str(info.value)
    assert message.startswith("3 problems:")
    assert all(key in message for key in ("train.learning_rate", "train.log_every",
                                          "window.batch_size"))


def test_as_toml_round_trips_every_section():
    config = load_config_text(GOOD + '[train]\nstep_hooks = [{use = "h.py:Hook", n = 2}]\n')
    assert load_config_text(as_toml(config)) == config
