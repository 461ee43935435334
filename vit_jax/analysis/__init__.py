"""Numerics behind the ViT paper's analysis figures (Fig. 6 attention maps, Fig. 7)."""
