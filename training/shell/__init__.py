"""The training shell shared by every trainer: precision, optimizer, checkpoints, metrics, Ray Train wiring.

Trainers (JeDi, the fine-tuning methods) own their data and loss; everything a run needs to be
resumable, observable and scalable lives here once.
"""
