"""`babyllm bench`: how fast babyLLM trains and talks on this machine, judged against the machine itself.

For each config, in one run:

- **matmul peak**: GFLOP/s of the model's own GEMM shapes (neurons and logits layers forward and both
  backward products, the [T, T]-sized sequence mixes forward and backward), in fp32 and bf16. `peak` is
  the best shape (the machine's matmul speed for this model); `gemm mix` is what the model's GEMMs
  would reach together, each weighted by its share of a training step's FLOPs. Shapes whose FLOPs would
  take long on a CPU are measured with fewer rows (same inner dimensions); the shape used is recorded.
- **training**: the real `Tutor.step()` (data, forward, backward, clip, AdamW, schedule), median time
  over several steps after warm-up -> tokens/s, ms/step, achieved GFLOP/s (model FLOPs only:
  `train_flops_per_token * tokens/s`) and the fraction of the peak. Machines are noisy (on a shared
  CPU the same GEMM swings 2x within minutes), so the peak (measured after training) takes the best
  of two measurements of its top shapes, and one GEMM is also timed right before every step: `vs
  probe` is the median of step speed over that probe's speed, a fraction that is robust to the
  machine changing pace during the run.
- **memory**: peak resident memory while training (CPU: the process's VmHWM, restarted just before
  the warm-up; `ru_maxrss` where that cannot be restarted) or `torch.cuda.max_memory_allocated` (CUDA).
- **generation**: tokens/s of `Infer2.stream` (the chat path: prefill then one token per call with
  carried state) at that config.
- **naive reference**: the original one-token-per-pass approach -- for each position run the model on
  the whole prefix and keep only the last logits -- timed at evenly spread positions, against one
  whole-sequence forward pass of the same batch: the speed-up of the whole-sequence path.

`--batch auto` fills a GPU: two probe steps (memory grows linearly with the batch) pick the largest
power-of-two multiple of the config's batch whose step fits in FILL_FRACTION of the device's memory; on
a CPU it keeps the config's batch (speed hardly depends on it there).

Each config is measured in a fresh child process, so its memory peak is its own and one config's
allocator state does not colour the next. `--scaling` instead measures training tokens/s and memory
while context length, neurons and batch each take three sizes around the base config.

The package, one concept a module: `budget` (how long each measurement may take), `machine` (what this
machine is), `memory` (the process's memory and page faults), `timing` (timing a call), `peak` (the
model's GEMM shapes and their GFLOP/s), `training` (the Tutor's steps), `generation` (chat speed and the
naive reference), `measure` (everything for one config), `fill` (--batch auto), `child` (one config per
child process), `render` (the tables) and `command` (the `babyllm bench` command).
"""

from babyllm.commands.bench.command import main

__all__ = ["main"]
