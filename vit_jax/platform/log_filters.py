"""Log hygiene shared by the command-line entry points (main, demo)."""
from __future__ import annotations

import logging as std_logging

from absl import logging


class QuietLibraries:
  """Keeps orbax's per-save INFO chatter (dozens of lines per checkpoint) out of the log."""

  def filter(self, record) -> bool:
    return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def install() -> None:
  """Filters the absl handler (what `app.run` programs log through)."""
  logging.get_absl_handler().addFilter(QuietLibraries())
