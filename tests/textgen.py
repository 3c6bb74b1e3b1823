"""Deterministic made-up English for tests, so no test depends on text the project did not write."""

import random

SUBJECTS = ["the baker", "a small dog", "my neighbour", "the old captain", "Zoë", "the teacher", "a tired cat",
            "the children", "our landlord", "the fisherman", "a quiet student", "the mayor"]
VERBS = ["walked to", "painted", "forgot", "found", "carried", "cleaned", "sang about", "looked for",
         "borrowed", "fixed", "counted", "dreamed of"]
OBJECTS = ["the red bicycle", "a loaf of bread", "the harbour", "twelve apples", "the café by the river",
           "a broken radio", "the garden gate", "an old map", "the morning train", "a jar of honey"]
ENDINGS = [".", "!", "?", " again.", " before noon.", " in the rain.", ", and then slept.", " with a smile."]


def sentences(n: int, seed: int = 0) -> str:
    """n sentences of varied, grammatical nonsense, with line breaks every few sentences."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
        out.append(s[0].upper() + s[1:])
        out.append("\n" if i % 4 == 3 else " ")
    return "".join(out)
