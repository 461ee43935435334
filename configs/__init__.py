"""The training recipes, installed with the package as `vit_jax.configs`.

This folder is the package `vit_jax.configs` (setup.py maps it), so configs import each
other as `from vit_jax.configs import common` and `python -m vit_jax.main
--config=configs/<name>.py` finds them from any directory (vit_jax/recipes.py).
"""
