"""The fine-tuning learning-rate sweep of the ViT paper (Appendix B.1.1), in pieces.

grid.py (the rates and each rate's run), minival.py (the held-out slice of the training
split the choice is made on), choice.py (the choice, from minival results only),
record.py (DIR/sweep.json and the check that DIR holds this recipe's runs), plot.py (the
PNG). The entry point is vit_jax/finetune_sweep.py.
"""


class SweepError(ValueError):
  """A sweep that cannot be run as asked; the message names the value and the fix."""
