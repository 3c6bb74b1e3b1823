"""Training: the Tutor and its parts (progress, handout, engine, stepper, examiner, saves, steering, recorder),
the Librarian (tokenizer and corpus), the Soul (saves), the Counsellor (timings and debug.log), ranks under
torchrun, and the alerts."""
