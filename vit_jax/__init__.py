"""vit_jax: Vision Transformers (ViT, ResNet+ViT hybrids, Swin) in JAX/Flax."""
