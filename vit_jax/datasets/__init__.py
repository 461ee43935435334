"""Dataset sources the project ships; importing this registers the `vit_demo` tfds builder.

`DatasetError` is defined first so that the source modules can raise it without an
import cycle (vit_jax.input_pipeline re-exports it).
"""


class DatasetError(ValueError):
  """A configured dataset or split is missing or malformed; the message says the fix."""


from vit_jax.datasets import demo  # noqa: E402,F401  (registers 'vit_demo' with tfds)
from vit_jax.datasets import folder  # noqa: E402,F401
