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
from vit_jax.models.swin.v2 import SwinTransformerV2
from vit_jax.models.swin.windows import relative_position_index

__all__ = ['adapt', 'windows', 'adapt_params', 'adapt_pretrained', 'bicubic_matrix',
           'resize_relative_position_bias_table', 'patch_mask', 'SwinTransformer',
           'SwinTransformerV2',
           'relative_position_index', 'VARIANTS', 'V2_VARIANTS']

VARIANTS = {
    'Swin-T': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'Swin-S': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'Swin-B': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'Swin-L': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    # Tests: an 8x8 map in stage 0 (window 4: shifted windows + mask), merged to 4x4.
    'Swin-testing': dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4,
                         image_size=(32, 32)),
}

# Swin V2 (arXiv 2111.09883 Table 1 sizes; official configs/swinv2/*.yaml): windows
# and image sizes of the released ImageNet-1K models (T/S/B: window 8 at 256 px) and of
# the ImageNet-22K pretraining of L (window 12 at 192 px). Fine-tuned variants are
# overrides, e.g. window_size=24, image_size=384, pretrained_window_sizes=(12, 12, 12, 6).
V2_VARIANTS = {
    'SwinV2-T': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'SwinV2-S': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'SwinV2-B': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'SwinV2-L': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48),
                     window_size=12, image_size=(192, 192)),
    # Tests: as Swin-testing (window 4 with shift and mask on the 8x8 map of stage 0).
    'SwinV2-testing': dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                           window_size=4, image_size=(32, 32)),
}


def _factory(defaults: dict, module_cls: type = SwinTransformer):
  def make(num_classes: int, **overrides) -> SwinTransformer:
    if 'drop_path_rate' in overrides:  # timm / official name of the same knob.
      if 'stochastic_depth' in overrides:
        raise ValueError('give stochastic_depth or drop_path_rate, not both')
      overrides['stochastic_depth'] = overrides.pop('drop_path_rate')
    registry.check_overrides(module_cls, overrides)
    return module_cls(num_classes=num_classes, **{**defaults, **overrides})
  return make


def _register_all() -> None:
  for name, defaults in VARIANTS.items():
    registry.register(name, _factory(defaults))
  for name, defaults in V2_VARIANTS.items():
    registry.register(name, _factory(defaults, SwinTransformerV2))


_register_all()
