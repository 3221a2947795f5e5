"""Held-out accuracy of the streamed model next to an offline-trained copy of the same model.

    python -m examples.cnn_digits.evaluate examples/cnn_digits/config.toml

The offline copy sees the same training images the same number of times (model.fit, one
process), so the two numbers compare online distributed training with the usual way.
"""

import json

import keras
import numpy as np

from examples.cnn_digits.producer import split
from hvd_online.commands.finished_run import open_run


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def main() -> None:
    config, template, checkpoint = open_run("held-out accuracy: streamed vs offline")
    assert checkpoint is not None
    x_train, x_test, y_train, y_test = split()
    online = template.build_model()
    online.set_weights(checkpoint.weights)
    samples = checkpoint.state.samples_total

    keras.utils.set_random_seed(config.train.seed)
    offline = template.build_model()
    offline.compile(template.make_optimizer(config.train.learning_rate),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    epochs = max(1, round(samples / len(x_train)))
    offline.fit(x_train, y_train, batch_size=2 * config.window.batch_size, epochs=epochs,
                verbose=0)
    result = {"samples_streamed": samples, "offline_epochs": epochs,
              "online_held_out_accuracy": accuracy(online, x_test, y_test),
              "offline_held_out_accuracy": accuracy(offline, x_test, y_test)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
