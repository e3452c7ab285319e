"""Making new scorers: evolve seed data (Evol Complexity / Evol Quality), rank the variants with a chat model
and write the scorer training data. Nothing here needs TRL; ``deita_hf.training.scorer`` trains on the result.
"""
