"""ToyWorld: a rendered world with an answer key, where personalization is measurable on a CPU."""
