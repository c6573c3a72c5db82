"""The one exception of the body package."""

from __future__ import annotations

__all__ = ["BodyModelError"]


class BodyModelError(ValueError):
    """A body model file or array is missing, incomplete or has the wrong layout.

    Messages name the file (or model) and the key, and say what was expected, so a user pointing
    the node at their own SMPL file can fix it without reading the code.
    """
