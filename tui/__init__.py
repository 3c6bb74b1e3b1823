"""babyllm-tui: the Textual training cockpit (and viewer) for babyLLM."""
