"""LazyAdam: Keras' Adam on the rows a sparse gradient touches, nothing on the others."""

import keras
import numpy as np
import tensorflow as tf

from hvd_online.model.lazy_adam import LazyAdam


def rows_gradient(rows: list[int], width: int = 3) -> tf.IndexedSlices:
    values = tf.constant(np.arange(1, len(rows) * width + 1, dtype=np.float32).reshape(-1, width))
    return tf.IndexedSlices(values, tf.constant(rows, tf.int64), tf.constant([6, width], tf.int64))


def table() -> keras.Variable:
    return keras.Variable(np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3))


def test_first_step_equals_adam_and_repeated_rows_add_up():
    lazy_table, adam_table = table(), table()
    lazy, adam = LazyAdam(0.1), keras.optimizers.Adam(0.1)
    lazy.apply([rows_gradient([1, 3, 3])], [lazy_table])
    adam.apply([tf.convert_to_tensor(rows_gradient([1, 3, 3]))], [adam_table])
    np.testing.assert_allclose(lazy_table.numpy(), adam_table.numpy(), rtol=1e-6)
    untouched = [0, 2, 4, 5]
    np.testing.assert_array_equal(lazy_table.numpy()[untouched], table().numpy()[untouched])


def test_rows_not_touched_by_a_step_do_not_move_while_adam_keeps_moving_them():
    lazy_table, adam_table = table(), table()
    lazy, adam = LazyAdam(0.1), keras.optimizers.Adam(0.1)
    for rows in ([1, 3], [4]):
        lazy.apply([rows_gradient(rows)], [lazy_table])
        adam.apply([tf.convert_to_tensor(rows_gradient(rows))], [adam_table])
        if rows == [1, 3]:
            after_first = lazy_table.numpy().copy()
            adam_after_first = adam_table.numpy().copy()
    np.testing.assert_array_equal(lazy_table.numpy()[[1, 3]], after_first[[1, 3]])
    assert not np.allclose(adam_table.numpy()[[1, 3]], adam_after_first[[1, 3]])
    assert not np.allclose(lazy_table.numpy()[4], after_first[4])


def test_dense_gradients_get_keras_adam():
    lazy_table, adam_table = table(), table()
    grad = tf.constant(np.ones((6, 3), np.float32))
    LazyAdam(0.1).apply([grad], [lazy_table])
    keras.optimizers.Adam(0.1).apply([grad], [adam_table])
    np.testing.assert_allclose(lazy_table.numpy(), adam_table.numpy())
