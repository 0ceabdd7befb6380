"""One module per library; each defines ``FAMILIES: list[core.zoo.family.Family]``."""
