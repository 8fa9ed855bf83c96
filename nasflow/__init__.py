"""nasflow: declarative, reproducible differentiable neural architecture search.

Layers, bottom up: ``spaces`` (ops, cells, supernet) -> ``methods`` (what differs between
DARTS, DropNAS, ...) -> ``train`` (search / retrain / evaluate loops) -> ``cli`` (pipeline glue).
"""

__version__ = "0.1.0"
