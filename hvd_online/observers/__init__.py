"""Who reads the step reports on rank 0: progress, metrics log, TensorBoard, the serving
exporter and the console link."""
