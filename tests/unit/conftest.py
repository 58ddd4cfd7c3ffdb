"""Fixtures shared by the unit tests."""

from tests.unit.memory_tree import tree

__all__ = ["tree"]
