"""JeDi training on Ray Train: multi-source image sets → coupled-attention UNet."""
