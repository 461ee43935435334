"""Forward MACs (analytic, from the traced program) vs published figures and by hand."""
import jax.numpy as jnp
import pytest

from vit_jax.cost import flops
from vit_jax import models


@pytest.mark.parametrize('name,res,published_gmacs', [
    ('ViT-B/16', 224, 17.6),
    ('ViT-B/16', 384, 55.4),
    ('ViT-L/16', 384, 190.7),
])
def test_forward_macs_within_3_percent_of_published(name, res, published_gmacs):
  macs = flops.forward_macs(models.create(name, num_classes=1000, image_size=res))
  assert abs(macs / 1e9 - published_gmacs) / published_gmacs < 0.03


def test_forward_macs_by_hand_for_the_tiny_vit():
  # testing: 32x32 image, patch 4 -> 64 patches + cls = 65 tokens, D 32, MLP 64,
  # 2 layers, 10 classes.
  t, d, mlp, layers = 65, 32, 64, 2
  embed = 64 * (4 * 4 * 3) * d
  per_layer = 3 * t * d * d + 2 * t * t * d + t * d * d + 2 * t * d * mlp
  head = d * 10
  model = models.create('testing', num_classes=10)
  assert flops.forward_macs(model) == embed + layers * per_layer + head


def test_macs_do_not_depend_on_dtype_or_remat():
  base = flops.forward_macs(models.create('testing', num_classes=10))
  assert flops.forward_macs(models.create('testing', num_classes=10,
                                         dtype=jnp.bfloat16, remat=True)) == base
