"""Distributed start-up, CPU devices, malloc, log filters and TF device hiding: what
the process needs from its machine before any model exists."""
