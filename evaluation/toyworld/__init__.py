"""The ToyWorld experiment: JeDi vs its ablations on novel subjects, scored by the world's oracle."""
