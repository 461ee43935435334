"""Input data: sources (tfds builders, image folders), preflight, the global and the
per-host streams, global batches, and the image ops they apply.

`DatasetError` is defined here, before any source module is imported, so that every one
of them can raise it without an import cycle.
"""


class DatasetError(ValueError):
  """A configured dataset or split is missing or malformed; the message says the fix."""


def _hide_accelerators() -> None:
  # Before any module of this package touches TF (see platform/tf_devices.py).
  from vit_jax.platform import tf_devices  # pylint: disable=import-outside-toplevel
  tf_devices.hide_accelerators_from_tf()


_hide_accelerators()
