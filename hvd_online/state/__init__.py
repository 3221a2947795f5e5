"""What survives a restart: the run directory's paths, checkpoints on disk and the typed
run state, and the checkpoint manager that saves and restores every stateful part."""
