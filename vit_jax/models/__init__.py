"""Model registry: `models.create(name, num_classes, **overrides)` for every family."""
from vit_jax.models import vit  # registers ViT-* and R*+ViT-*
from vit_jax.models import swin  # registers Swin-*
from vit_jax.models.registry import create, names

__all__ = ['create', 'names']
