"""Search spaces: ops, op sets and the weight-sharing supernet."""

from nasflow.spaces.cell_space import CellSpace, build_cell_space
from nasflow.spaces.supernet import SearchNetwork

__all__ = ["CellSpace", "SearchNetwork", "build_cell_space"]
