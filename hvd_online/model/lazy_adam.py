"""Adam that moves only the rows a sparse gradient touches (TF-Addons' LazyAdam, TF 1's
sparse Adam): an `Embedding`'s gradient is `tf.IndexedSlices` of the rows a step looked up,
and Keras' Adam densifies it and updates the whole table and both its moments every step. A
row's moments then decay only when the row is touched, which is what `DynamicEmbedding`'s
tables do too (`adam_rows`, shared). Dense gradients get Keras' Adam unchanged."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def adam_rows(m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, rate: Any, t: tf.Tensor,
              beta_1: float, beta_2: float, epsilon: float) -> tuple[tf.Tensor, ...]:
    """Adam's step `t` (from 1) for some rows: their new moments and the amount to subtract."""
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * tf.square(g)
    step = rate * tf.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) * m / (tf.sqrt(v) + epsilon)
    return m, v, step


def summed_rows(grad: tf.IndexedSlices) -> tuple[tf.Tensor, tf.Tensor]:
    """The distinct rows of a sparse gradient and each row's summed gradient."""
    rows, where = tf.unique(tf.cast(grad.indices, tf.int64))
    return rows, tf.math.unsorted_segment_sum(grad.values, where, tf.shape(rows)[0])


class LazyAdam(keras.optimizers.Adam):
    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            super().update_step(gradient, variable, learning_rate)
            return
        index = self._get_variable_index(variable)
        m, v = self._momentums[index].value, self._velocities[index].value
        rows, g = summed_rows(gradient)
        t = tf.cast(self.iterations + 1, variable.dtype)
        rate = tf.cast(learning_rate, variable.dtype)
        m_rows, v_rows, step = adam_rows(tf.gather(m, rows), tf.gather(v, rows), g, rate, t,
                                         self.beta_1, self.beta_2, self.epsilon)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        # Keras' TensorFlow backend passes the tf.Variable under the Keras one here
        target = variable.value if isinstance(variable, keras.Variable) else variable
        target.scatter_sub(tf.IndexedSlices(step, rows))
