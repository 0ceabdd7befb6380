"""``python -m evaluation ...``: what ``ray job submit`` runs; the same app as ``s3jedi eval``."""

from evaluation.cli import app

if __name__ == "__main__":
    app()
