"""The tfds builders the project ships; importing this registers `vit_demo` with tfds."""
from vit_jax.datasets import demo  # noqa: F401  (registers 'vit_demo' with tfds)
