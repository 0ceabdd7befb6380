"""``s3jedi toyworld``: ToyWorld's commands from the apps that own them, under one name.

``data`` and ``train`` belong to training (the recipe), ``eval`` and ``demo`` to evaluation; only
``cluster`` may import both apps, so the combined group is assembled here, and ``eval`` gets
training's fine-tuning of the novel subjects for its fine-tuning rows.
"""

from __future__ import annotations

import typer

from evaluation.toyworld import cli as evaluation_toyworld
from training.toyworld import cli as training_toyworld


def finetune_subjects(cfg, subjects, size):
    """Training's fine-tuning of the novel subjects, imported when ``eval`` runs: it pulls in torch,
    which ``s3jedi --help`` must not wait for."""
    from training.toyworld.finetuned import finetune_subjects as run

    return run(cfg, subjects, size)


app = typer.Typer(
    help="ToyWorld: a rendered world with an answer key where personalization is measured on a CPU "
    "(data, train, eval, demo).",
    no_args_is_help=True,
)
for part in (training_toyworld.app, evaluation_toyworld.app):
    app.registered_commands.extend(part.registered_commands)
app.command("eval")(evaluation_toyworld.eval_command(finetune_subjects))
