"""Scores shared by the S3 builder (consistency filter), evaluation and self-distillation."""
