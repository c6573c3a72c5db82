"""Track ids across frames: Hungarian assignment on box overlap and centre distance, with
birth and death hysteresis so a missed detection does not renumber a person.

A detection matched to a track keeps its id. An unmatched detection starts a *tentative* track
that gets a public id only after ``min_hits`` consecutive matches (or at once when
``min_hits == 1``); a track unmatched for more than ``max_age`` frames is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .boxes import Box, iou_matrix


@dataclass
class _Track:
    box: Box
    hits: int = 1
    misses: int = 0
    track_id: int = -1  # -1 while tentative


@dataclass
class Tracker:
    iou_weight: float = 1.0
    center_weight: float = 0.5  # per box diagonal of centre distance
    max_cost: float = 1.2  # above this a pair is not a match
    min_hits: int = 2
    max_age: int = 15
    _tracks: List[_Track] = field(default_factory=list)
    _next_id: int = 1

    def update(self, boxes: Sequence[Box]) -> List[int]:
        """Track id per box (-1 for a tentative track), in the order of ``boxes``."""
        cost = self._cost([t.box for t in self._tracks], boxes)
        rows, cols = linear_sum_assignment(cost) if cost.size else ((), ())
        ids = [-1] * len(boxes)
        matched_tracks, matched_boxes = set(), set()
        for r, c in zip(rows, cols):
            if cost[r, c] > self.max_cost:
                continue
            t = self._tracks[r]
            t.box, t.hits, t.misses = boxes[c], t.hits + 1, 0
            matched_tracks.add(r)
            matched_boxes.add(c)
            ids[c] = self._confirm(t)
        for i, t in enumerate(self._tracks):
            if i not in matched_tracks:
                t.misses += 1
        # a tentative track that misses once is gone; a confirmed one survives max_age misses
        self._tracks = [t for t in self._tracks
                        if t.misses <= (self.max_age if t.track_id >= 0 else 0)]
        for c, box in enumerate(boxes):
            if c not in matched_boxes:
                t = _Track(box)
                self._tracks.append(t)
                ids[c] = self._confirm(t)
        return ids

    def active_ids(self) -> List[int]:
        """Ids of confirmed tracks still alive (including ones missed for <= max_age frames)."""
        return [t.track_id for t in self._tracks if t.track_id >= 0]

    def _confirm(self, t: _Track) -> int:
        if t.track_id < 0 and t.hits >= self.min_hits:
            t.track_id, self._next_id = self._next_id, self._next_id + 1
        return t.track_id

    def _cost(self, tracks: Sequence[Box], boxes: Sequence[Box]) -> np.ndarray:
        if not tracks or not boxes:
            return np.zeros((len(tracks), len(boxes)))
        iou = iou_matrix(tracks, boxes)
        tc = np.array([t.center for t in tracks])[:, None]
        bc = np.array([b.center for b in boxes])[None]
        diag = np.array([np.hypot(t.width, t.height) for t in tracks])[:, None]
        dist = np.linalg.norm(tc - bc, axis=-1) / np.maximum(diag, 1e-6)
        return self.iou_weight * (1 - iou) + self.center_weight * dist
