"""The live view's views: what the heatmap panels break accesses down by, and their keys."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    key: str
    name: str  # what the panel title says
    by: str | None  # ``damon_bpf.reports.heatmap.heatmaps``' breakdown: None, cpu, tid, rw
    hint: str  # the word shown next to the key in the header


VIEWS = {
    "a": View("a", "all accesses", None, "all"),
    "c": View("c", "by CPU", "cpu", "cpu"),
    "t": View("t", "by thread", "tid", "thread"),
    "w": View("w", "reads vs writes", "rw", "r/w"),
}
ANSWER_HINTS = {"d": "dirty", "s": "share", "m": "numa"}  # live.answers.ANSWERS, as the header names them
VIEW_NAMES = {"all": "a", "cpu": "c", "thread": "t", "rw": "w"}  # --view choices
