"""What a session lent a GPU machine carries there, and how it runs the benchmarks in one command.

The device machine has no network and a fixed Python image (3.12, torch 2.11), while the project is
pinned for the CPU machines (3.11, torch 2.14). ``bundle`` packs the few packages the image lacks into
archives small enough to travel with the working tree; ``setup.sh`` unpacks them there; ``check``
says before any benchmark runs whether the result imports and which versions it is using.
"""
