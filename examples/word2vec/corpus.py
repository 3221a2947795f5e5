"""Real text from package registries, for Word2Vec: the shortened English Wikipedia dump and
the three word-similarity / analogy sets that ship in the `gensim` 4.4.0 wheel
(`pip download --no-deps`; gensim itself is not needed), plus the King James Bible from
Debian's `bible-kjv-text` (read with its `bible` program). Fetched once, checked by sha256 and
cached outside the repository; never committed.

    python -m examples.word2vec.corpus       # fetch (once), tokenise, print what is there

The text is tokenised simply: wiki markup stripped, lower case, runs of letters a-z. One
sentence per line of `corpus.txt`: a wiki paragraph or a Bible verse, wiki articles first.
"""

from __future__ import annotations

import bz2
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from examples.movielens.data import CACHE as DATA_CACHE

CACHE = DATA_CACHE / "word2vec"
WHEEL = "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
TEST_DATA = "gensim/test/test_data/"
#: member of the wheel -> its sha256
MEMBERS = {
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2":
        "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
    "wordsim353.tsv": "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d",
    "simlex999.txt": "d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d",
    "questions-words.txt": "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36",
}
BIBLE_PACKAGE = "bible-kjv-text"
BIBLE_RANGE = "gen1:1-rev22:21"
#: bumps when the tokenisation changes, so a cached corpus is rebuilt
TOKENISER = 1
WORD = re.compile(r"[a-z]+")


def _fetch_member(name: str) -> Path:
    path = CACHE / name
    want = MEMBERS[name]
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == want:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (DATA_CACHE / WHEEL).is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "--only-binary=:all:", "--python-version", "3.11",
                        "--platform", "manylinux_2_28_x86_64", "gensim==4.4.0",
                        "-d", str(DATA_CACHE)], check=True)
    with zipfile.ZipFile(DATA_CACHE / WHEEL) as wheel:
        data = wheel.read(TEST_DATA + name)
    if hashlib.sha256(data).hexdigest() != want:
        msg = f"{name} in {WHEEL} does not match its known sha256"
        raise RuntimeError(msg)
    path.write_bytes(data)
    return path


def evaluation_file(name: str) -> Path:
    """`wordsim353.tsv`, `simlex999.txt` or `questions-words.txt`, from the gensim wheel."""
    return _fetch_member(name)


# -- tokenising ---------------------------------------------------------------------------------

_DROP = [re.compile(p, re.DOTALL) for p in (
    r"<!--.*?-->", r"<ref[^>]*/>", r"<ref[^>]*>.*?</ref>", r"\{\|.*?\|\}",
    r"\[\[(?:File|Image|Category|[a-z][a-z-]*):[^\[\]]*(?:\[\[[^\[\]]*\]\][^\[\]]*)*\]\]",
    r"<[^>]+>", r"https?://\S+")]
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_LINK = re.compile(r"\[\[(?:[^|\[\]]*\|)?([^\[\]]*)\]\]")
_EXTERNAL = re.compile(r"\[\S+ ?([^\[\]]*)\]")


def strip_markup(text: str) -> str:
    """An article's wiki markup reduced to its prose (roughly: templates, tables, references,
    files and categories go; a link keeps its label)."""
    text = html.unescape(text)
    while True:  # templates nest: strip the innermost until none is left
        shorter = _TEMPLATE.sub("", text)
        if shorter == text:
            break
        text = shorter
    for pattern in _DROP:
        text = pattern.sub(" ", text)
    return _EXTERNAL.sub(r"\1", _LINK.sub(r"\1", text))


def tokens(line: str) -> list[str]:
    return WORD.findall(line.lower())


def wiki_sentences(dump: Path) -> list[list[str]]:
    """One sentence a paragraph (a line of prose) of every article (not redirects)."""
    sentences = []
    with bz2.open(dump) as f:
        for _, element in ET.iterparse(f):
            if element.tag.rsplit("}", 1)[-1] != "text":
                continue
            text = element.text or ""
            element.clear()
            if text.lstrip().lower().startswith("#redirect"):
                continue
            for line in strip_markup(text).splitlines():
                words = tokens(line)
                if len(words) >= 3:
                    sentences.append(words)
    return sentences


def bible_sentences() -> list[list[str]]:
    """One sentence a verse of the King James Bible."""
    if shutil.which("bible") is None:
        msg = (f"the `bible` program is missing: install Debian's {BIBLE_PACKAGE} "
               f"(apt-get install {BIBLE_PACKAGE}); scripts/setup.sh does")
        raise RuntimeError(msg)
    text = subprocess.run(["bible", "-f", BIBLE_RANGE], capture_output=True, text=True,
                          check=True).stdout
    verses = [line.split(" ", 1)[1] for line in text.splitlines() if " " in line]
    return [words for words in map(tokens, verses) if words]


def corpus_file() -> Path:
    """`corpus.txt`: one tokenised sentence a line, built once and cached."""
    path = CACHE / "corpus.txt"
    stamp = CACHE / "corpus.json"
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get(
            "tokeniser") == TOKENISER:
        return path
    dump = _fetch_member(next(iter(MEMBERS)))
    sentences = wiki_sentences(dump) + bible_sentences()
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(" ".join(s) + "\n" for s in sentences))
    tmp.replace(path)
    stamp.write_text(json.dumps({"tokeniser": TOKENISER, "sentences": len(sentences),
                                 "words": sum(map(len, sentences))}))
    return path


def sentences(limit: int = 0) -> list[list[str]]:
    """The corpus' sentences in order (the first `limit` only, if set)."""
    lines = corpus_file().read_text().splitlines()
    return [line.split() for line in (lines[:limit] if limit else lines)]


class Vocabulary:
    """Words seen at least `min_count` times, most frequent first (ties by spelling), as
    gensim's `build_vocab` keeps them."""

    def __init__(self, corpus: list[list[str]], min_count: int) -> None:
        counts = Counter(word for sentence in corpus for word in sentence)
        kept = sorted((w for w, c in counts.items() if c >= min_count),
                      key=lambda w: (-counts[w], w))
        self.words = kept
        self.index = {w: i for i, w in enumerate(kept)}
        self.counts = np.array([counts[w] for w in kept], np.int64)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, corpus: list[list[str]]) -> list[np.ndarray]:
        """Each sentence as word ids, words outside the vocabulary left out."""
        index = self.index
        return [np.array([index[w] for w in s if w in index], np.int32) for s in corpus]


if __name__ == "__main__":
    corpus = corpus_file()
    print(corpus, (CACHE / "corpus.json").read_text())
    for name in list(MEMBERS)[1:]:
        print(evaluation_file(name))
