"""Word2Vec on real text, shortened: the first 3,000 sentences of the Wikipedia + Bible corpus,
one pass, published into the broker and learnt by 2 real ranks, then gensim on the same
sentences; both scored alike. The full table (README "Word2Vec on real text") comes from
`python -m benchmarks.word2vec`."""

import json
import subprocess
import sys

import pytest

from tests.integration.harness import REPO

pytestmark = pytest.mark.integration


def test_word2vec_benchmark_smoke(tmp_path):
    out = tmp_path / "word2vec.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.word2vec", "--smoke", "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    assert proc.returncode == 0
    report = json.loads(out.read_text())
    ours, gensim = report["hvd_online"], report["gensim"]
    assert report["sentences"] == 3000 and report["vocabulary"] > 1000
    assert ours["records_trained"] == ours["records_published"] > 100000, "each record once"
    # the ranks learnt to tell a context word from noise words
    assert ours["told_apart_last_tenth"] > ours["told_apart_first_tenth"] + 0.05
    for result in (ours, gensim):
        assert set(result) >= {"wordsim353", "simlex999", "analogies", "words_per_s"}
    assert ours["wordsim353"]["pairs"] > 50 and ours["analogies"]["questions"] > 100
    assert "| hvd-online / gensim |" in proc.stdout
