"""Pinned parameter counts (1000 classes, default image size) of every registered variant.

Counts come from `jax.eval_shape`, so ViT-H and Swin-L cost no memory. A variant that is
registered without a pinned count fails `test_every_variant_is_pinned`.
"""
import pytest

from vit_jax.cost import flops
from vit_jax import models

# Published counts (without the optional pre_logits layer).
PINNED = {
    'ViT-Ti/16': 5_717_416,
    'ViT-S/16': 22_050_664,
    'ViT-S/32': 22_878_952,
    'ViT-B/32': 88_224_232,
    'ViT-B/16': 86_567_656,
    'ViT-B/8': 86_576_872,
    'ViT-L/32': 306_535_400,
    'ViT-L/16': 304_326_632,
    'ViT-H/14': 632_045_800,
    'R+ViT-Ti/16': 6_337_704,
    'R26+ViT-S/32': 36_431_912,
    'R26+ViT-B/32': 101_383_976,
    'R50+ViT-B/16': 98_659_112,
    'R50+ViT-L/32': 328_994_856,
    # Swin (window 7 at 224; Swin-B at window 12 / 384 is pinned in test_swin.py).
    'Swin-T': 28_288_354,
    'Swin-S': 49_606_258,
    'Swin-B': 87_768_224,
    'Swin-L': 196_532_476,
    # Swin V2 (timm 1.0.31: swinv2_{tiny,small,base}_window8_256, 256 px / window 8;
    # SwinV2-L: 192 px / window 12, the ImageNet-22K pretraining size; a V2 count does
    # not depend on the window, = swinv2_large_window12to24_192to384).
    'SwinV2-T': 28_347_154,
    'SwinV2-S': 49_728_418,
    'SwinV2-B': 87_918_816,
    'SwinV2-L': 196_739_932,
    # Tiny test variants (our own; pinned so a change to them is deliberate).
    'testing': 53_832,
    'R+ViT-testing': 178_280,
    'Swin-testing': 68_318,
    'SwinV2-testing': 77_086,
}


def test_every_variant_is_pinned():
  unpinned = sorted(set(models.names()) - set(PINNED))
  assert not unpinned, f'registered variants without a pinned parameter count: {unpinned}'


@pytest.mark.parametrize('name', sorted(PINNED))
def test_parameter_count(name):
  assert flops.count_params(models.create(name, num_classes=1000)) == PINNED[name]


def test_representation_layer_adds_hidden_squared_plus_bias():
  base = flops.count_params(models.create('ViT-B/16', num_classes=1000))
  with_rep = flops.count_params(
      models.create('ViT-B/16', num_classes=1000, representation_size=768))
  assert with_rep - base == 768 * 768 + 768
