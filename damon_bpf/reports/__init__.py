"""Reports over record files, one module each: ``heatmap``, ``access`` (one snapshot's regions),
``wss`` and ``breakdown``; and the decisions: ``dirty_rate`` (which target to live-migrate), ``sharing``
(which threads to place together), ``numa`` (which regions to move to which node).

Each takes ``list[TargetRecord]`` (from ``damon_bpf.recordfile.read_record``) and returns plain
data, with ``table``/``render`` for rich renderables and ``to_json`` for JSON; nothing here knows
about click. The modules' main functions share their module's name (``access.access``), so they
are not re-exported here: that would hide the modules.
"""
