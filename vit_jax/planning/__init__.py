"""Planning a run before launch: topologies, per-device memory of the compiled step,
the options that would fit, and the time and cost forecast (python -m vit_jax.plan)."""
