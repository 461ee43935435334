"""Log hygiene shared by the command-line entry points (main, demo)."""
from __future__ import annotations

import logging as std_logging

from absl import logging


# tfds 4.9.10 warns on every parse of a serialized example (the global stream parses
# each record it reads by index, data/records.py) that its own code reads the deprecated
# FeatureConnector.dtype; nothing a user can act on.
TFDS_DTYPE_WARNING = '`FeatureConnector.dtype` is deprecated'


class QuietLibraries:
  """Keeps orbax's per-save INFO chatter (dozens of lines per checkpoint) and tfds's
  per-record deprecation warning out of the log."""

  def filter(self, record) -> bool:
    if TFDS_DTYPE_WARNING in str(record.msg):
      return False
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def install() -> None:
  """Filters the absl handler (what `app.run` programs log through)."""
  logging.get_absl_handler().addFilter(QuietLibraries())
