"""Cache keys by object identity that cannot go stale.

``id(obj)`` alone is reused as soon as ``obj`` is freed, so a cache keyed on it can match a new,
different View or record (seen: the status bar showing an old "running" state after the run
ended). ``Same(obj)`` compares by identity like ``id`` but holds ``obj``, so while the key is
cached the id cannot be handed to another object.
"""

from __future__ import annotations


class Same:
    """An identity key: equal only to a ``Same`` of the very same object."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)
