"""The network (Embed, Neurons, Windows, Memory, Memory 2, Logits), its fp32 CPU GEMMs, the device and precision
it runs in, the bits-per-byte metric and the exported-model folder. Knows nothing of training, run directories or
the UI."""
