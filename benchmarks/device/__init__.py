"""Running the GPU benchmarks on an offline GPU host: what it needs copied there, and how it runs them.

The host has no network and a fixed Python image (3.12, torch 2.11), while the project is pinned for
its own environment (3.11, torch 2.14). ``bundle`` packs the few packages the image lacks into
archives small enough to travel with the working tree; ``setup.sh`` unpacks them there; ``check``
says before any benchmark runs whether the result imports and which versions it is using.
"""
