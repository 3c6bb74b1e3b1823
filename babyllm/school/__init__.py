"""Training: the Tutor and its parts, the Librarian (tokenizer and corpus), the Soul (saves), the Counsellor
(timings and debug.log), ranks under torchrun, and the alerts."""
