"""``damon-bpf live``: a terminal view of DAMON snapshots while they are made.

model   - the recent snapshots of each target (a Recorder listener), frozen while paused
views   - the four views and the keys that select them
heat    - the scrolling heatmap panel (grids from ``damon_bpf.reports.heatmap``)
table   - the hottest regions table (numbers from ``damon_bpf.reports.breakdown``)
screen  - header, footer and the layout that fits them to the terminal
keys    - single key presses from a terminal in cbreak mode, always restored
app     - the full-screen display and the one-line-per-snapshot printer, driven by the session tick
"""
