"""What a step trains on: a rank's sources opened from the resume state, windows decoded into
batches (pre-labelled, or raw events joined with their late labels)."""
