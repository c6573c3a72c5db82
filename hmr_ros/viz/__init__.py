"""Pictures for people: mesh overlays coloured by per-part visibility."""

from .overlay import draw_labels, draw_overlay, visibility_colors

__all__ = ["draw_labels", "draw_overlay", "visibility_colors"]
