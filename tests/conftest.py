"""Shared test set-up."""

import torch

# Tests use tiny shapes, and several tests run a training thread beside a chat or UI thread: with the
# default intra-op pool, OpenMP threads spin against each other on a 2-core machine and tiny steps
# slow down 100x. One thread keeps the suite fast and deterministic.
torch.set_num_threads(1)
