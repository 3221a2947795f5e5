"""Embeddings for unbounded IDs (users, items, ads): an ID gets its own row the first time it
is seen often enough, rows of IDs gone quiet are reused, and the table never outgrows
`capacity` rows. Monolith's collisionless table, in the shape of a Keras layer.

    user = DynamicEmbedding(dim=32, capacity=200_000, column=0)(x)   # x: int64 IDs, (n, k)

- IDs are int64 >= 0 (hash signed IDs into that range): a negative ID always gets the default
  row, as an unknown one does.
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

import weakref
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
#: each table's compiled admission (`DynamicEmbedding._admission`); the compiled function
#: holds its layer, so an entry lives as long as the process (only `admit()` callers add one)
_ADMISSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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

    # -- admission (compiled into the step; the same IDs on every rank) ---------------------
    # Compiled TensorFlow on the variables, in the training step's own call: in numpy on
    # eager copies of the variables it cost ~1.8 ms a table a step, and in a call of its own
    # ~0.7 ms (a call costs ~0.3 ms here even empty). MovieLens' two tables: 0.25x a fixed
    # `Embedding`'s events/s in numpy, 0.86x (lazy Adam) in the step (table_throughput.json).

    def admit(self, ids: np.ndarray, step: int) -> np.ndarray:
        """Sight `ids` at `step`: known IDs are refreshed, new ones seen `min_count` times get
        a row (a free one, else an evicted one). Returns the row of each of `ids`."""
        return self._admission()(tf.constant(np.asarray(ids, np.int64)),
                                 tf.constant(step, tf.int64)).numpy()

    def sight(self, ids: tf.Tensor, step: tf.Tensor) -> None:
        """`admit` inside a tf.function: the training step's, before its forward pass."""
        self._admit_graph(ids, step)

    def _admission(self) -> Any:
        """`admit` compiled on its own (a training step compiles `sight` into its call).
        Kept out of the layer's attributes, so a SavedModel does not carry it."""
        fn = _ADMISSIONS.get(self)
        if fn is None:
            # called as a concrete function: a tf.function's dispatch costs ~0.5 ms a call
            fn = tf.function(self._admit_graph).get_concrete_function(
                tf.TensorSpec((None,), tf.int64), tf.TensorSpec((), tf.int64))
            _ADMISSIONS[self] = fn
        return fn

    def _admit_graph(self, ids: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        unique, _, seen = tf.unique_with_counts(tf.sort(ids))  # sorted: ranks agree
        rows = self.rows_of(unique)
        known = rows > 0
        self.last_seen.value.scatter_nd_update(tf.boolean_mask(rows, known)[:, None],
                                               tf.fill([tf.reduce_sum(tf.cast(known, tf.int32))],
                                                       step))
        # a negative ID is never admitted: -1 marks a free row in `row_ids`
        unknown = ~known & (unique >= 0)
        new = tf.boolean_mask(unique, unknown)
        if self.min_count > 1:
            counts = self._sighted(new, tf.boolean_mask(seen, unknown))
            new = tf.boolean_mask(new, counts >= self.min_count)
        taken, evicted = tf.cond(tf.size(new) > 0, lambda: self._insert(new, step),
                                 lambda: (tf.constant(0), tf.constant(0, tf.int64)))
        mine = self.rows_of(ids)
        self.stats.value.assign_add(tf.stack([
            tf.cast(taken, tf.int64), evicted,
            tf.reduce_sum(tf.cast(tf.equal(mine, 0), tf.int64)),
            tf.cast(tf.size(new) - taken, tf.int64)]))
        return mine

    def _insert(self, new: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Rows for the `new` IDs (as many as there are free or evictable): their weights
        drawn afresh, their optimizer slots zeroed, the index rewritten. How many got a
        row, and how many of those evicted an ID."""
        row_ids = self.row_ids.value
        chosen = self._rows_for(tf.size(new), row_ids, self.last_seen.value, step)
        taken = tf.size(chosen)
        before = tf.gather(row_ids, chosen)
        gone = tf.boolean_mask(before, before >= 0)  # the IDs evicted
        index = chosen[:, None]
        self.row_ids.value.scatter_nd_update(index, new[:taken])
        self.last_seen.value.scatter_nd_update(index, tf.fill([taken], step))
        self.embeddings.value.scatter_nd_update(index, self._fresh_rows(chosen, step))
        for slot in self.slots:
            slot.value.scatter_nd_update(index, tf.zeros((taken, self.dim), tf.float32))
        tf.cond(taken > 0, lambda: self._update_index(gone, new[:taken], chosen),
                lambda: None)
        return taken, tf.cast(tf.size(gone), tf.int64)

    def _rows_for(self, wanted: tf.Tensor, row_ids: tf.Tensor, last_seen: tf.Tensor,
                  step: tf.Tensor) -> tf.Tensor:
        """Rows for `wanted` new IDs, in order: free rows (lowest first), then the least
        recently seen rows quiet for `ttl_steps` (oldest first, lowest row on a tie); fewer
        when the table is full and not enough are quiet. Picked for the whole step at once:
        one pass over the table, not one per new ID (the scale test inserts ~100 a step).
        A full table skips the search for free rows, and the oldest quiet rows are a top_k,
        not a sort (each pass over 200,000 rows costs ~1 ms here)."""
        owned = self.stats.value[0] - self.stats.value[1]  # inserts - evictions
        free = tf.cond(owned < self.capacity,
                       lambda: tf.cast(tf.where(row_ids[1:] < 0)[:, 0] + 1, tf.int32)[:wanted],
                       lambda: tf.zeros([0], tf.int32))
        missing = tf.maximum(wanted - tf.size(free), 0)

        # on a tie top_k gives the lower index (the lower row) first
        def oldest_quiet() -> tf.Tensor:
            # owned rows only: the free rows are taken already (and a free row looks quiet)
            quiet = (row_ids[1:] >= 0) & (step - last_seen[1:] >= self.ttl_steps)
            k = tf.minimum(missing, tf.reduce_sum(tf.cast(quiet, tf.int32)))
            age = tf.where(quiet, -last_seen[1:], tf.int64.min)
            return tf.math.top_k(age, k=k).indices + 1

        def oldest_of_a_full_table() -> tf.Tensor:
            # every row owned (the usual case): the oldest rows, of which the quiet ones
            k = tf.minimum(missing, self.capacity)
            oldest = tf.math.top_k(-last_seen[1:], k=k).indices + 1
            return tf.boolean_mask(oldest, step - tf.gather(last_seen, oldest)
                                   >= self.ttl_steps)

        evicted = tf.cond(missing > 0,
                          lambda: tf.cond(tf.size(free) > 0, oldest_quiet,
                                          oldest_of_a_full_table),
                          lambda: tf.zeros([0], tf.int32))
        return tf.concat([free, evicted], 0)

    def _sighted(self, ids: tf.Tensor, times: tf.Tensor) -> tf.Tensor:
        """Count these sightings in the sketch; each ID's count so far (an upper bound)."""
        cells = self._cells(ids)  # (depth, n)
        depth = tf.broadcast_to(tf.range(SKETCH_DEPTH, dtype=tf.int64)[:, None], tf.shape(cells))
        index = tf.reshape(tf.stack([depth, cells], -1), (-1, 2))
        self.sketch.value.scatter_nd_add(index, tf.tile(tf.cast(times, tf.int32),
                                                        [SKETCH_DEPTH]))
        counts = tf.reshape(tf.gather_nd(self.sketch.value, index), tf.shape(cells))
        return tf.reduce_min(counts, axis=0)

    def _cells(self, ids: tf.Tensor) -> tf.Tensor:
        mixed = tf.cast(ids, tf.uint64)[None, :] * tf.constant(_PRIMES)[:, None]
        cells = tf.math.floormod(tf.bitwise.right_shift(mixed, tf.constant(np.uint64(17))),
                                 tf.constant(np.uint64(self.sketch_width)))
        return tf.cast(cells, tf.int64)

    def _update_index(self, gone: tf.Tensor, new: tf.Tensor, rows: tf.Tensor) -> None:
        """The sorted index without the `gone` IDs and with the `new` ones (ascending) at
        `rows`: a merge of two sorted lists in a few gathers over the table, not a sort
        (sorting 200,000 IDs a step was most of the scale test's step; a scatter of them
        took 10 ms, masking or stacking them 1.5-3 ms each here)."""
        size = self.capacity
        ids, index_rows = tf.identity(self.sorted_ids.value), tf.identity(self.sorted_rows.value)
        removed = tf.sort(tf.searchsorted(ids, gone))  # their positions (each is in the index)
        count = tf.size(new)
        # each new ID's place: the kept IDs below it, plus the new ones before it
        below = tf.searchsorted(ids, new)
        new_at = below - tf.searchsorted(removed, below) + tf.range(count)
        merged = size - tf.size(removed) + count  # >= size: an insert evicts or takes a free row
        is_new = tf.tensor_scatter_nd_update(tf.zeros([merged], tf.int32), new_at[:, None],
                                             tf.ones([count], tf.int32))[:size]
        new_so_far = tf.cumsum(is_new)
        # the k-th kept entry's old position: k plus the removed positions r_i with r_i - i <= k
        kept = tf.range(size) - new_so_far
        shifted = removed - tf.range(tf.size(removed))
        old = tf.clip_by_value(kept + tf.searchsorted(shifted, kept, side="right"), 0, size - 1)
        inserted = tf.maximum(new_so_far - 1, 0)
        fresh = is_new > 0  # past `size` there was padding only
        self.sorted_ids.value.assign(tf.where(fresh, tf.gather(new, inserted),
                                              tf.gather(ids, old)))
        self.sorted_rows.value.assign(tf.where(fresh, tf.gather(rows, inserted),
                                               tf.gather(index_rows, old)))

    def _fresh_rows(self, rows: Any, step: Any) -> tf.Tensor:
        """Initial weights of `rows`, uniform in [-0.05, 0.05): a hash of (seed, step, row,
        column), so the same on every rank and whichever rows are drawn together."""
        rows = tf.cast(tf.convert_to_tensor(rows), tf.uint64)
        key = (tf.constant(np.uint64(self.seed)) * tf.constant(_PRIMES[0])
               ^ tf.cast(tf.convert_to_tensor(step), tf.uint64) * tf.constant(_PRIMES[1]))
        cells = (key ^ rows[:, None] * tf.constant(_PRIMES[2])
                 ^ tf.cast(tf.range(self.dim, dtype=tf.int64), tf.uint64)[None, :]
                 * tf.constant(_PRIMES[3]))
        bits = tf.bitwise.right_shift(_splitmix64(cells), tf.constant(np.uint64(11)))
        unit = tf.cast(bits, tf.float64) * 2.0**-53
        return tf.cast(unit * 0.1 - 0.05, tf.float32)

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


def _splitmix64(z: tf.Tensor) -> tf.Tensor:
    def mix(z: tf.Tensor, shift: int, by: int) -> tf.Tensor:
        return (z ^ tf.bitwise.right_shift(z, tf.constant(np.uint64(shift)))) * tf.constant(
            np.uint64(by))

    z = z + tf.constant(np.uint64(0x9E3779B97F4A7C15))
    z = mix(mix(z, 30, 0xBF58476D1CE4E5B9), 27, 0x94D049BB133111EB)
    return z ^ tf.bitwise.right_shift(z, tf.constant(np.uint64(31)))


def dynamic_tables(model: keras.Model) -> list[DynamicEmbedding]:
    """The model's dynamic tables, in a fixed order (the same on every rank)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, DynamicEmbedding)]
