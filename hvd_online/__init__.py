"""hvd-online: train TensorFlow models online from Pulsar streams, ranks synchronised by
Horovod ring-allreduce."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU feature notices) drowns the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
