"""The ToyWorld recipe: toy base pipeline, base stage and JeDi stage through the JeDi trainer."""
