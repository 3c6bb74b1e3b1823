"""A run directory: its files and their format, their writer and its mirrors (TensorBoard, W&B, Trackio), the
one-trainer lock, the follower that reads a run another process trains, reference runs for the loss plot, the run
listing and the chat log."""
