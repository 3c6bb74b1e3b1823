"""The network (Embed, Neurons, Windows, Memory, Memory 2, Logits), its fp32 CPU GEMMs, the device and precision
it runs in, and the bits-per-byte metric. Knows nothing of training, run directories or the UI."""
