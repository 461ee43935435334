"""The benchmark's library: configurations and sweep syntax, timing, the JSON record."""
