"""A run directory: its files and their format, the one-trainer lock, TensorBoard files, the follower that
reads a run another process trains, reference runs for the loss plot, the run listing and the chat log."""
