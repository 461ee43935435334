"""Swin Transformer: the model (model.py), its window geometry (windows.py), its
checkpoint adaptation and family hooks (adapt.py), and the registered variants here.

Importing the package registers `Swin-*` and the Swin family hooks.
"""
from vit_jax.models import registry
from vit_jax.models.swin import adapt
from vit_jax.models.swin import windows
from vit_jax.models.swin.adapt import adapt_params
from vit_jax.models.swin.adapt import adapt_pretrained
from vit_jax.models.swin.adapt import bicubic_matrix
from vit_jax.models.swin.adapt import resize_relative_position_bias_table
from vit_jax.models.swin.model import patch_mask
from vit_jax.models.swin.model import SwinTransformer
from vit_jax.models.swin.windows import relative_position_index

__all__ = ['adapt', 'windows', 'adapt_params', 'adapt_pretrained', 'bicubic_matrix',
           'resize_relative_position_bias_table', 'patch_mask', 'SwinTransformer',
           'relative_position_index', 'VARIANTS']

VARIANTS = {
    'Swin-T': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'Swin-S': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'Swin-B': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'Swin-L': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    # Tests: an 8x8 map in stage 0 (window 4: shifted windows + mask), merged to 4x4.
    'Swin-testing': dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4,
                         image_size=(32, 32)),
}


def _factory(defaults: dict):
  def make(num_classes: int, **overrides) -> SwinTransformer:
    if 'drop_path_rate' in overrides:  # timm / official name of the same knob.
      if 'stochastic_depth' in overrides:
        raise ValueError('give stochastic_depth or drop_path_rate, not both')
      overrides['stochastic_depth'] = overrides.pop('drop_path_rate')
    registry.check_overrides(SwinTransformer, overrides)
    return SwinTransformer(num_classes=num_classes, **{**defaults, **overrides})
  return make


def _register_all() -> None:
  for name, defaults in VARIANTS.items():
    registry.register(name, _factory(defaults))


_register_all()
