"""Ray Serve app: finetuning-free personalization (JeDi) and text-to-image with fine-tuned subjects.

``serving.app`` assembles the deployments (``gateway`` → ``models``), ``serving.api`` is the HTTP
API and demo page, ``serving.cli`` the ``s3jedi serve`` commands, ``serving.client`` a small client.
"""
