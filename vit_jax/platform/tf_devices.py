"""TF device hiding: tf.data runs on the host CPU only.

A TF that also grabbed the GPU / TPU would take the memory JAX needs. This must run
before TF initialises its devices, so `vit_jax.data` calls it on import, before any of
its modules touches TF.
"""
import tensorflow as tf


def hide_accelerators_from_tf() -> None:
  for kind in ('GPU', 'TPU'):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):  # already initialised, or no such device type
      pass
