"""Model registry: `models.create(name, num_classes, **overrides)` for every family.

Importing this package imports every family, so each one's variants and hooks
(`registry.family(model)`) are registered.
"""
from vit_jax.models import vit  # registers ViT-* and R*+ViT-*
from vit_jax.models import vit_family  # registers the ViT / hybrid hooks
from vit_jax.models import swin  # registers Swin-* and the Swin hooks
from vit_jax.models.registry import create, names

__all__ = ['create', 'names', 'swin', 'vit', 'vit_family']
