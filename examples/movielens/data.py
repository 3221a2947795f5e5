"""MovieLens-100K, from a package registry: the ratings file inside the `recbole` 1.2.1 wheel
(`pip download --no-deps`; recbole itself is never installed), cached outside the repository.

100,000 ratings (1-5) by 943 users of 1,682 movies, with Unix timestamps. GroupLens' terms:
research use; the data may not be redistributed, and publications using it cite F. Maxwell
Harper and Joseph A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4),
2015. So it is fetched, never committed.

    python -m examples.movielens.data        # fetch (once) and print where it is
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("HVD_ONLINE_DATA", Path.home() / ".cache" / "hvd-online" / "data"))
WHEEL = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
RATINGS = np.dtype([("user", "<i8"), ("item", "<i8"), ("rating", "<f4"), ("time", "<i8")])


def ratings_file() -> Path:
    """The ratings file, fetched into the cache on first use and checked by its sha256."""
    path = CACHE / "ml-100k.inter"
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == SHA256:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (CACHE / WHEEL).is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "recbole==1.2.1", "-d", str(CACHE)], check=True)
    with zipfile.ZipFile(CACHE / WHEEL) as wheel:
        data = wheel.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != SHA256:
        msg = f"{MEMBER} in {WHEEL} does not match its known sha256"
        raise RuntimeError(msg)
    path.write_bytes(data)
    return path


def ratings() -> np.ndarray:
    """Every rating in time order (ties keep the file's order): the stream as it happened."""
    lines = ratings_file().read_text().splitlines()[1:]  # a header line first
    rows = np.array([tuple(int(float(v)) if i != 2 else float(v)
                           for i, v in enumerate(line.split("\t"))) for line in lines], RATINGS)
    return rows[np.argsort(rows["time"], kind="stable")]


if __name__ == "__main__":
    print(ratings_file())
