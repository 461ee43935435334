"""Compute cost: hardware peaks, FLOP counting and the core-hours accounting."""
