"""Embeddings for unbounded IDs (users, items, ads): an ID gets its own row the first time it
is seen often enough, rows of IDs gone quiet are reused, and the table never outgrows
`capacity` rows. Monolith's collisionless table, in the shape of a Keras layer.

    user = DynamicEmbedding(dim=32, capacity=200_000, column=0)(x)   # x: int64 IDs, (n, k)

- Row 0 is the shared default row: an ID maps to it until it has been seen `min_count` times
  (counted in a count-min sketch, so unseen IDs cost no memory), and when the table is full
  with nothing evictable (counted as `full`).
- Eviction: when the table is full, the least recently seen row whose ID was not seen for
  `ttl_steps` steps is reused; its weights are drawn afresh and its optimizer slots zeroed.
- Sparse updates: the table is not one of the optimizer's variables. Its gradient rows are
  applied by an optimizer of its own (`apply_sparse`), and only touched rows move:
  `optimizer="adam"` (lazy Adam, moments kept per row, on the batch's mean gradient) or
  `"sgd"` (no slots; each row moves by `learning_rate` times the sum of its samples'
  gradients, so a row's step does not shrink as the batch grows: River's and most
  recommenders' per-rating SGD, taken a batch at a time).
- Every piece of the table's state is a variable of the layer: the ID of each row, when each
  row was last seen, the sorted ID -> row index the forward pass searches, the sketch and the
  counters. So it travels with the weights: checkpoints, the initial broadcast, the weight
  digest that shows ranks in sync, the console's predictor and every SavedModel (TF-Serving
  takes raw IDs; an unknown ID gets the default row).
- Consistent on every rank: `admit` must see the same IDs in the same order on every rank.
  The lockstep synchroniser allgathers each step's IDs and every rank admits the union, in
  sorted order (hvd_online/sync/steps.py). Local SGD is refused: it would need that collective
  every step, which is what it exists to avoid.

>>> layer = DynamicEmbedding(dim=2, capacity=2, column=0, ttl_steps=1)
>>> _ = layer(np.array([[7], [8]]))
>>> layer.admit(np.array([7, 8]), step=1).tolist()       # rows of 7 and 8
[1, 2]
>>> layer.admit(np.array([9]), step=1).tolist()          # full, nothing quiet long enough
[0]
>>> layer.admit(np.array([9, 8]), step=3).tolist()       # 7 went quiet: its row goes to 9
[1, 2]
>>> layer.counters()
{'size': 2, 'capacity': 2, 'inserts': 3, 'evictions': 1, 'default_hits': 1, 'full': 1}
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hvd_online.model.lazy_adam import adam_rows, summed_rows

#: padding of the sorted index: larger than any ID, so searches land before it
NO_ID = np.iinfo(np.int64).max
SKETCH_DEPTH = 4
#: counters kept in the `stats` variable, in this order
COUNTERS = ("inserts", "evictions", "default_hits", "full")
_PRIMES = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                    0x27D4EB2F165667C5], dtype=np.uint64)


class DynamicEmbedding(keras.layers.Layer):
    def __init__(self, dim: int, capacity: int, column: int, min_count: int = 1,
                 ttl_steps: int = 10_000, seed: int = 0, sketch_width: int = 1 << 16,
                 optimizer: str = "adam", learning_rate: float | None = None,
                 **kwargs: Any) -> None:
        """`column`: which column of the model's int64 ID input this table reads (the
        synchroniser admits that column's IDs before each step). `learning_rate`: the
        table's own, or None for the model's."""
        super().__init__(**kwargs)
        if capacity < 1 or dim < 1 or min_count < 1 or ttl_steps < 1:
            msg = (f"DynamicEmbedding needs dim >= 1, capacity >= 1, min_count >= 1 and "
                   f"ttl_steps >= 1, got {dim}, {capacity}, {min_count}, {ttl_steps}")
            raise ValueError(msg)
        if optimizer not in ("adam", "sgd") or (learning_rate is not None
                                                and not learning_rate > 0):
            msg = (f"DynamicEmbedding: optimizer must be 'adam' or 'sgd' and learning_rate "
                   f"> 0 or None, got {optimizer!r}, {learning_rate!r}")
            raise ValueError(msg)
        self.optimizer, self.learning_rate = optimizer, learning_rate
        self.dim, self.capacity, self.column = dim, capacity, column
        self.min_count, self.ttl_steps, self.seed = min_count, ttl_steps, seed
        self.sketch_width = sketch_width if min_count > 1 else 1

    def build(self, input_shape: Any) -> None:
        rows = self.capacity + 1

        def state(name: str, shape: tuple[int, ...], dtype: str) -> Any:
            return self.add_weight(name=name, shape=shape, dtype=dtype, trainable=False,
                                   initializer="zeros")

        self.embeddings = state("embeddings", (rows, self.dim), "float32")
        self.slots = ([state("adam_m", (rows, self.dim), "float32"),
                       state("adam_v", (rows, self.dim), "float32")]
                      if self.optimizer == "adam" else [])
        self.row_ids = state("row_ids", (rows,), "int64")
        self.last_seen = state("last_seen", (rows,), "int64")
        self.sorted_ids = state("sorted_ids", (self.capacity,), "int64")
        self.sorted_rows = state("sorted_rows", (self.capacity,), "int32")
        self.sketch = state("sketch", (SKETCH_DEPTH, self.sketch_width), "int32")
        self.stats = state("stats", (len(COUNTERS),), "int64")
        self.row_ids.assign(np.full(rows, -1, np.int64))
        self.sorted_ids.assign(np.full(self.capacity, NO_ID, np.int64))
        self.embeddings.assign(self._fresh_rows(np.arange(rows), step=0))

    # -- the forward pass: raw IDs -> rows -> vectors ---------------------------------------

    def rows_of(self, ids: tf.Tensor) -> tf.Tensor:
        ids = tf.cast(ids, tf.int64)
        at = tf.minimum(tf.searchsorted(self.sorted_ids.value, ids), self.capacity - 1)
        found = tf.equal(tf.gather(self.sorted_ids.value, at), ids)
        return tf.where(found, tf.gather(self.sorted_rows.value, at), 0)

    def call(self, ids: Any) -> Any:
        ids = tf.convert_to_tensor(ids)
        if len(ids.shape) > 1:  # the model's whole ID input: this table's column of it
            ids = ids[:, self.column]
        return tf.gather(self.embeddings.value, self.rows_of(ids))

    # -- admission (eager, between steps; the same IDs on every rank) -----------------------

    def admit(self, ids: np.ndarray, step: int) -> np.ndarray:
        """Sight `ids` at `step`: known IDs are refreshed, new ones seen `min_count` times get
        a row (a free one, else an evicted one). Returns the row of each of `ids`. In numpy
        on copies of the variables, written back once (eager TensorFlow ops cost ~50 us each:
        looking IDs up with them took 14 ms of a 16 ms step here)."""
        ids = np.asarray(ids, np.int64)
        unique, seen = np.unique(ids, return_counts=True)
        row_ids, last_seen = self.row_ids.value.numpy(), self.last_seen.value.numpy()
        index = self.sorted_ids.value.numpy(), self.sorted_rows.value.numpy()
        stats = self.stats.value.numpy()
        rows = self._lookup(index, unique)
        last_seen[rows[rows > 0]] = step
        new = unique[rows == 0]
        if len(new) and self.min_count > 1:
            new = new[self._sighted(new, seen[rows == 0]) >= self.min_count]
        rows_for_new = self._rows_for(len(new), row_ids, last_seen, step)
        stats[COUNTERS.index("full")] += len(new) - len(rows_for_new)
        stats[COUNTERS.index("evictions")] += int(np.sum(row_ids[rows_for_new] >= 0))
        stats[COUNTERS.index("inserts")] += len(rows_for_new)
        row_ids[rows_for_new] = new[: len(rows_for_new)]
        last_seen[rows_for_new] = step
        fresh = rows_for_new.tolist()
        if fresh:
            self._reset_rows(np.array(fresh), step)
            index = self._write_index(row_ids)
            self.row_ids.value.assign(row_ids)
        self.last_seen.value.assign(last_seen)
        mine = self._lookup(index, ids)
        stats[COUNTERS.index("default_hits")] += int(np.sum(mine == 0))
        self.stats.value.assign(stats)
        return mine

    def _lookup(self, index: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
        """`rows_of` in numpy, on the index's arrays."""
        sorted_ids, sorted_rows = index
        at = np.minimum(np.searchsorted(sorted_ids, ids), self.capacity - 1)
        return np.where(sorted_ids[at] == ids, sorted_rows[at], 0)

    def _rows_for(self, wanted: int, row_ids: np.ndarray, last_seen: np.ndarray,
                  step: int) -> np.ndarray:
        """Rows for `wanted` new IDs, in order: free rows (lowest first), then the least
        recently seen rows quiet for `ttl_steps` (oldest first, lowest row on a tie); fewer
        when the table is full and not enough are quiet. Picked for the whole step at once:
        one pass over the table, not one per new ID (the scale test inserts ~100 a step)."""
        if not wanted:
            return np.zeros(0, np.int64)
        free = np.flatnonzero(row_ids[1:] < 0)[:wanted] + 1
        missing = wanted - len(free)
        if missing <= 0:
            return free
        # owned rows only: every free row is taken already (and a free row looks quiet too)
        quiet = np.flatnonzero((row_ids[1:] >= 0)
                               & (step - last_seen[1:] >= self.ttl_steps)) + 1
        if len(quiet) > missing:
            quiet = quiet[np.argpartition(last_seen[quiet], missing - 1)[:missing]]
        quiet = quiet[np.lexsort((quiet, last_seen[quiet]))]
        return np.concatenate([free, quiet])

    def _sighted(self, ids: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Count these sightings in the sketch; each ID's count so far (an upper bound)."""
        sketch = self.sketch.value.numpy()
        cells = self._cells(ids)
        for depth in range(SKETCH_DEPTH):
            np.add.at(sketch[depth], cells[depth], times.astype(np.int32))
        self.sketch.value.assign(sketch)
        return np.min([sketch[d][cells[d]] for d in range(SKETCH_DEPTH)], axis=0)

    def _cells(self, ids: np.ndarray) -> np.ndarray:
        mixed = ids.astype(np.uint64)[None, :] * _PRIMES[:, None]
        return ((mixed >> np.uint64(17)) % np.uint64(self.sketch_width)).astype(np.int64)

    def _write_index(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        owned = np.flatnonzero(row_ids >= 0)
        order = np.argsort(row_ids[owned], kind="stable")
        sorted_ids = np.full(self.capacity, NO_ID, np.int64)
        sorted_rows = np.zeros(self.capacity, np.int32)
        sorted_ids[: len(owned)] = row_ids[owned][order]
        sorted_rows[: len(owned)] = owned[order]
        self.sorted_ids.value.assign(sorted_ids)
        self.sorted_rows.value.assign(sorted_rows)
        return sorted_ids, sorted_rows

    def _fresh_rows(self, rows: np.ndarray, step: int) -> np.ndarray:
        """Initial weights of `rows`: the same on every rank (seeded by step and row)."""
        out = np.empty((len(rows), self.dim), np.float32)
        for i, row in enumerate(rows.tolist()):
            rng = np.random.default_rng([self.seed, step, row])
            out[i] = rng.uniform(-0.05, 0.05, self.dim)
        return out

    def _reset_rows(self, rows: np.ndarray, step: int) -> None:
        indices = tf.constant(rows[:, None], tf.int64)
        self.embeddings.value.scatter_nd_update(indices, self._fresh_rows(rows, step))
        zeros = tf.zeros((len(rows), self.dim), tf.float32)
        for slot in self.slots:
            slot.value.scatter_nd_update(indices, zeros)

    # -- the update: only the rows a step touched ---------------------------------------

    def apply_sparse(self, grad: Any, count: Any, learning_rate: Any, iteration: Any,
                     beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> None:
        """Inside the step's tf.function: `grad` (IndexedSlices of the table: the gradient of
        the loss summed over the step's `count` samples, all ranks') moves only the rows it
        touches. `learning_rate`, `iteration`: the model optimizer's, used unless the table
        has its own rate."""
        if not isinstance(grad, tf.IndexedSlices):
            grad = tf.IndexedSlices(grad, tf.range(tf.shape(grad)[0]), tf.shape(grad))
        rows, g = summed_rows(grad)
        index = rows[:, None]
        rate = tf.cast(learning_rate if self.learning_rate is None else self.learning_rate,
                       tf.float32)
        if self.optimizer == "sgd":
            self.embeddings.value.scatter_nd_sub(index, rate * g)
            return
        g = g / tf.cast(count, tf.float32)
        slot_m, slot_v = self.slots
        t = tf.cast(iteration, tf.float32) + 1.0
        m, v, step = adam_rows(tf.gather(slot_m.value, rows), tf.gather(slot_v.value, rows), g,
                               rate, t, beta_1, beta_2, epsilon)
        slot_m.value.scatter_nd_update(index, m)
        slot_v.value.scatter_nd_update(index, v)
        self.embeddings.value.scatter_nd_sub(index, step)

    def counters(self) -> dict[str, int]:
        """Read for every step report: the rows owned are inserts that evicted no one, so
        no pass over the table is needed."""
        counts = dict(zip(COUNTERS, self.stats.value.numpy().tolist(), strict=True))
        return {"size": counts["inserts"] - counts["evictions"], "capacity": self.capacity,
                **counts}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "capacity": self.capacity,
                "column": self.column, "min_count": self.min_count,
                "ttl_steps": self.ttl_steps, "seed": self.seed,
                "sketch_width": self.sketch_width, "optimizer": self.optimizer,
                "learning_rate": self.learning_rate}


def dynamic_tables(model: keras.Model) -> list[DynamicEmbedding]:
    """The model's dynamic tables, in a fixed order (the same on every rank)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, DynamicEmbedding)]
