"""``damon-bpf report``: heatmap, access, wss and breakdown reports from a record file."""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.console import Console

from cli.types import parse_rate, parse_size, parse_size_bytes, parse_time_ns
from damon_bpf.errors import DamonBpfError, UsageError
from damon_bpf.outputs import open_output_stream
from damon_bpf.recordfile import read_record
from damon_bpf.recordfile.bulk import EXTRAS
from damon_bpf.reports import access as access_mod
from damon_bpf.reports import breakdown as breakdown_mod
from damon_bpf.reports import dirty_rate as dirty_mod
from damon_bpf.reports import heatmap as heatmap_mod
from damon_bpf.reports import numa as numa_mod
from damon_bpf.reports import sharing as sharing_mod
from damon_bpf.reports import wss as wss_mod
from damon_bpf.reports.common import select_target
from damon_bpf.reports.groups import GROUP_MODES

_LABEL_COLS = 17  # width heatmap row labels take on screen


def _one_line_errors(func):
    """Same one-line form as the top-level group, also when the group runs on its own (tests)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DamonBpfError as err:
            click.echo(f"damon-bpf: error: {err}", err=True)
            sys.exit(err.exit_code)
    return wrapper


def _common(func):
    func = click.option("--target", "target_id", type=int, metavar="ID",
                        help="Target id in the record (default: the first).")(func)
    func = click.option("-i", "--input", "input_path", default="damon.data", show_default=True,
                        type=click.Path(dir_okay=False), help="Record file to read.")(func)
    return _one_line_errors(func)


def _duration_ns(text: str) -> int:
    try:
        return parse_time_ns(text, "s")
    except ValueError as err:
        raise UsageError(f"bad time: {err}") from None


def _time_range(values: tuple[str, str] | None) -> tuple[int, int] | None:
    if not values:
        return None
    start, end = (_duration_ns(v) for v in values)
    if end <= start:
        raise UsageError(f"--time-range end {values[1]} is not after its start {values[0]}")
    return start, end


def _address(text: str) -> int:
    """An address: hex, decimal, or a size such as 4GiB (damo's spellings)."""
    try:
        return int(text, 0)
    except ValueError:
        return parse_size_bytes(text)


def _address_range(values: tuple[str, str] | None) -> tuple[int, int] | None:
    return _address_bounds(values) if values else None


def _address_bounds(values: tuple[str, str]) -> tuple[int, int]:
    try:
        start, end = (_address(v) for v in values)
    except ValueError:
        raise UsageError(f"bad --address-range {' '.join(values)}: use numbers such as "
                         "0x7f0000000000, 140737488355328 or 4GiB") from None
    if not 0 <= start < end <= 2**64:
        raise UsageError(f"--address-range {values[0]} {values[1]} is empty or out of range")
    return start, end


def _json_out(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2))


def _show(module, result, as_json: bool) -> None:
    """A report module's result as JSON or as its rich table."""
    if as_json:
        _json_out(module.to_json(result))
    else:
        Console().print(module.table(result))


@click.group()
def report() -> None:
    """Reports from a record file (damon.data); damo's reports read the same file."""


@report.command()
@_common
@click.option("--resol", nargs=2, type=click.IntRange(1, 2000), metavar="ROWS COLS",
              help="Address cells x time cells (default: 30 x terminal width; 300 x 500 for "
                   "images). Note damo's --resol is TIME ADDRESS.")
@click.option("--address-range", nargs=2, metavar="START END",
              help="Absolute addresses (default: the spans ever accessed, cold gaps skipped).")
@click.option("--time-range", nargs=2, metavar="START END",
              help="From the record's start, e.g. 2s 5.5s or 100ms 300ms (bare numbers: seconds).")
@click.option("--output", default="stdout", show_default=True, metavar="stdout|raw|FILE",
              help="Terminal, damo's raw '<time> <address> <heat>' lines, or an image (.png/.svg/.pdf).")
@click.option("--by", type=click.Choice(["cpu", "tid", "rw"]),
              help="One heatmap per CPU, per thread (busiest 8) or for reads and writes.")
@click.option("--scale", type=click.Choice(["log", "linear"]), default="log", show_default=True,
              help="Colour scale; log shows sparse accesses next to hot spots.")
@click.option("--cell", type=click.Choice(heatmap_mod.CELLS), default="mean", show_default=True,
              help="A cell's heat: its mean rate (as damo), or the hottest of ~8 finer rows it covers "
                   "(max: a small hot spot keeps its colour in a big cell, as live shows it).")
@click.option("--json", "as_json", is_flag=True, help="Print the grid as JSON (rows with their mappings, columns).")
def heatmap(input_path, target_id, resol, address_range, time_range, output, by, scale, cell, as_json) -> None:
    """When which addresses were how often accessed (time on x, address on y; the mappings beside)."""
    records = read_record(input_path, extras=frozenset({"maps"}) if by is None else EXTRAS)
    addr, times = _address_range(address_range), _time_range(time_range)
    if as_json:
        _json_out(heatmap_mod.to_json(heatmap_mod.heatmaps(records, by, resol or (30, 80), addr, times, target_id,
                                                           cell)))
        return
    if output not in ("stdout", "raw"):
        _to_image(records, output, by, resol or (300, 500), addr, times, target_id, scale, cell)
        click.echo(f"wrote {output}")
        return
    console = Console()
    if resol is None:
        resol = (30, max(10, console.width - _LABEL_COLS - heatmap_mod.MAPPING_COLS - 1))
    maps = heatmap_mod.heatmaps(records, by, resol, addr, times, target_id, cell)
    if output == "raw":
        click.echo("\n\n".join(heatmap_mod.raw_text(m) for m in maps))
        return
    # 16 colours cannot tell ten heat levels apart; characters can
    color = not console.no_color and console.color_system in ("256", "truecolor")
    console.print(heatmap_mod.render(maps, color=color, scale=scale))


def _to_image(records, path, by, resol, addr, times, target_id, scale, cell) -> None:
    _image(path, "heatmap image", lambda stream, image_format: heatmap_mod.to_png(
        records, stream, by, resol, addr, times, target_id, scale, cell, image_format))


def _image(path: str, what: str, draw) -> None:
    """``draw(stream, format)`` into ``path`` (0600, no planted links), its format from its name."""
    from matplotlib.backend_bases import FigureCanvasBase
    image_format = os.path.splitext(path)[1][1:].lower()
    if image_format not in FigureCanvasBase.get_supported_filetypes():
        raise UsageError(f"cannot draw {path}: use an image name ending in .png, .svg or .pdf")
    try:
        with open_output_stream(path, what) as stream:
            draw(stream, image_format)
    except OSError as err:
        raise DamonBpfError(f"cannot write {path}: {err.strerror or err}") from None


def _bound(text: str, parse, lo, hi):
    """damo's filter bounds: a value, or the words min / max."""
    return lo if text == "min" else hi if text == "max" else parse(text)


def _region_filter(sz_region, access_rate, age, address) -> access_mod.RegionFilter:
    def size(text: str) -> int:
        try:
            return parse_size_bytes(text)
        except ValueError as err:
            raise UsageError(f"bad --sz-region: {err}") from None

    def rate(text: str) -> float:
        try:
            return float(text.removesuffix("%"))
        except ValueError:
            raise UsageError(f"bad --access-rate {text!r}: use a percent such as 5 or 50%") from None

    out = access_mod.RegionFilter(address=[_address_bounds(a) for a in address])
    if sz_region:
        out.sz_region = tuple(_bound(v, size, 0, 2**64) for v in sz_region)
    if access_rate:
        out.access_rate = tuple(_bound(v, rate, 0.0, 100.0) for v in access_rate)
    if age:
        out.age = tuple(_bound(v, lambda t: _duration_ns(t) / 1e9, 0.0, float("inf")) for v in age)
    return out


def _snapshot_index(text: str) -> int | None:
    """--snapshot: an index, 'last', or 'hottest' (None: chosen once the record is read)."""
    if text == "hottest":
        return None
    if text == "last":
        return -1
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"bad --snapshot {text!r}: use hottest, last or an index (negative counts "
                         "from the end)") from None


def _access_reports(input_path, target_id, snapshot, group) -> list:
    index = _snapshot_index(snapshot)
    if group in (None, "mapping"):
        if index is not None:
            # only the snapshot shown is decoded: the others are scanned (a one-hour record in about a second)
            return [access_mod.access(read_record(input_path, snapshot=index), index, target_id)]
        records = read_record(input_path)
        rec = select_target(records, target_id)
        return [access_mod.access(records, access_mod.hottest_snapshot(rec), target_id)]
    if target_id is not None:
        raise UsageError("--group combines targets: leave out --target")
    return access_mod.access_groups(read_record(input_path), group, -1 if index is None else index)


@report.command()
@_common
@click.option("--snapshot", default="hottest", show_default=True, metavar="hottest|last|N",
              help="The snapshot shown: the one with the most accessed bytes weighted by rate (hottest), the last, "
                   "or an index (negative counts from the end). With --group comm/all, hottest means the last.")
@click.option("--group", type=click.Choice((*GROUP_MODES, "mapping")),
              help="Combine targets with the same command name (comm), cgroup (cgroup) or all of them, one table "
                   "per group; or "
                   "(mapping) one target's regions by the mappings they cover.")
@click.option("--sort-regions-by", "--sort_regions_by", "sort_by", multiple=True,
              type=click.Choice(access_mod.SORT_KEYS),
              help="Sort regions by this key (repeatable; as damo, the last given orders first). Default: address.")
@click.option("--sort-regions-dsc", "--sort_regions_dsc", "descending", multiple=True,
              type=click.Choice((*access_mod.SORT_KEYS, "all")), help="Sort these keys in descending order.")
@click.option("--style", type=click.Choice(access_mod.STYLES), default="detailed", show_default=True,
              help="hot: hottest regions first; cold: coldest first (damo's temperature: rate and age).")
@click.option("--sz-region", "--sz_region", nargs=2, metavar="MIN MAX",
              help="Only regions of this size (e.g. 4KiB 1GiB; min/max for no bound).")
@click.option("--access-rate", "--access_rate", nargs=2, metavar="MIN MAX",
              help="Only regions accessed in this percent of samples (e.g. 5 100).")
@click.option("--age", nargs=2, metavar="MIN MAX", help="Only regions this old (e.g. 1s max; bare numbers: seconds).")
@click.option("--address", nargs=2, multiple=True, metavar="START END",
              help="Only regions overlapping this address range (repeatable).")
@click.option("--raw-number", "--raw_number", "raw", is_flag=True,
              help="Plain numbers: bytes, decimal addresses, Hz and seconds without units.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def access(input_path, target_id, snapshot, group, sort_by, descending, style, sz_region, access_rate, age, address,
           raw, as_json) -> None:
    """The regions of one snapshot: size, access frequency, age, the mappings they cover."""
    region_filter = _region_filter(sz_region, access_rate, age, address)
    results = [access_mod.shape(result, region_filter, sort_by or ("address",), descending, style)
               for result in _access_reports(input_path, target_id, snapshot, group)]
    if group == "mapping":
        rows = access_mod.by_mapping(results[0])
        if as_json:
            _json_out(access_mod.mappings_json(results[0], rows))
        else:
            Console().print(access_mod.mappings_table(results[0], rows))
        return
    if as_json:
        _json_out(access_mod.to_json(results[0]) if group is None else [access_mod.to_json(r) for r in results])
        return
    console = Console()
    for result in results:
        console.print(access_mod.table(result, raw, bar=console.width >= 100))


@report.command()
@_common
@click.option("--write", is_flag=True, help="Dirty set (regions written) and write rate.")
@click.option("--skip", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="Leave out the first N snapshots (damo's --exclude_samples; damo skips 20).")
@click.option("--output", metavar="FILE", help="Also draw the sizes over time (with RSS and PSS) into an image "
                                               "(.png/.svg/.pdf).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def wss(input_path, target_id, write, skip, output, as_json) -> None:
    """Working-set size over time, as percentiles, beside the process's RSS and PSS."""
    result = wss_mod.wss(read_record(input_path, extras=frozenset()), target_id, write=write, skip=skip)
    if output:
        _image(output, "wss plot", lambda stream, image_format: wss_mod.write_plot(result, stream, image_format))
    _show(wss_mod, result, as_json)
    if output and not as_json:
        click.echo(f"wrote {output}")


@report.command()
@_common
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, metavar="N",
              help="How many of the hottest regions.")
@click.option("--snapshot", type=int, default=-1, show_default=True, metavar="N",
              help="Snapshot whose regions are the layout; negative counts from the end.")
@click.option("--time-range", nargs=2, metavar="START END",
              help="Count reports only in this span from the record's start (e.g. 2s 5s).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def breakdown(input_path, target_id, top, snapshot, time_range, as_json) -> None:
    """Share of the hottest regions' reports by CPU, thread, and reads vs writes."""
    result = breakdown_mod.breakdown(read_record(input_path), top, snapshot, _time_range(time_range),
                                     target_id)
    _show(breakdown_mod, result, as_json)


@report.command("dirty-rate")
@click.option("-i", "--input", "input_path", default="damon.data", show_default=True,
              type=click.Path(dir_okay=False), help="Record file to read.")
@click.option("--bandwidth", metavar="RATE", help="Migration link, e.g. 10Gbit/s or 1GiB/s: estimate "
                                                  "pre-copy rounds and seconds per target.")
@click.option("--max-downtime", default="300ms", show_default=True, metavar="TIME",
              help="Longest pause allowed for the last (stop-and-copy) round.")
@click.option("--max-rounds", type=click.IntRange(1, 10000), default=dirty_mod.DEFAULT_MAX_ROUNDS,
              show_default=True, help="Give up (does not converge) after this many rounds.")
@click.option("--memory", metavar="SIZE", help="What round 0 sends, e.g. a VM's 4GiB (default: each "
                                               "target's monitored size in its last snapshot).")
@click.option("--skip", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="Leave out each target's first N snapshots (start-up first touches).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_one_line_errors
def dirty_rate(input_path, bandwidth, max_downtime, max_rounds, memory, skip, as_json) -> None:
    """Bytes written per second per target, and which to live-migrate first (first line)."""
    result = dirty_mod.dirty_rate(
        read_record(input_path), parse_rate(bandwidth, "--bandwidth") if bandwidth else None,
        _duration_ns(max_downtime) / 1e9, max_rounds,
        parse_size(memory, "--memory") if memory else None, skip)
    _show(dirty_mod, result, as_json)


@report.command()
@_common
@click.option("--by", type=click.Choice(sharing_mod.BY_MODES), default="thread", show_default=True,
              help="Threads of one target (--target), or the target processes (same addresses: shared memory).")
@click.option("--skip", type=click.IntRange(0), default=0, show_default=True, metavar="N",
              help="Leave out the first N snapshots (start-up first touches).")
@click.option("--min-jaccard", type=click.FloatRange(0, 1, min_open=True),
              default=sharing_mod.DEFAULT_MIN_JACCARD, show_default=True,
              help="Group only while the groups' mean pairwise Jaccard is at least this.")
@click.option("--max-group", type=click.IntRange(1), metavar="N", help="At most N per group (e.g. cores per LLC).")
@click.option("--top", type=click.IntRange(1), default=20, show_default=True, help="Pairs shown in the table.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sharing(input_path, target_id, by, skip, min_jaccard, max_group, top, as_json) -> None:
    """Hot memory shared by pairs of threads (or processes) in the same windows, and groups to co-locate."""
    result = sharing_mod.sharing(read_record(input_path), by, target_id, skip, min_jaccard=min_jaccard,
                                 max_group=max_group)
    if as_json:
        _json_out(sharing_mod.to_json(result))
    else:
        Console().print(sharing_mod.table(result, top))


@report.command()
@_common
@click.option("--snapshot", type=int, default=-1, show_default=True, metavar="N",
              help="Snapshot whose regions are the layout; negative counts from the end.")
@click.option("--time-range", nargs=2, metavar="START END",
              help="Count reports only in this span from the record's start (e.g. 2s 5s).")
@click.option("--samples", type=click.IntRange(1), default=numa_mod.DEFAULT_SAMPLES, show_default=True,
              help="Pages asked about per region (evenly spread).")
@click.option("--min-reports", type=click.IntRange(0), default=numa_mod.DEFAULT_MIN_REPORTS, show_default=True,
              help="Hot enough: at least this many reports in the region.")
@click.option("--min-share", type=click.FloatRange(0, 1), default=numa_mod.DEFAULT_MIN_SHARE, show_default=True,
              help="Mostly from one node: at least this share of the region's reports.")
@click.option("--min-age", type=click.IntRange(0), default=numa_mod.DEFAULT_MIN_AGE, show_default=True,
              help="Old enough: DAMON's age of at least this many aggregation intervals, or reports in at least "
                   "this many of the windows summed.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Move the regions worth moving (move_pages) and say what moved.")
@click.option("--quota", default="256MiB/s", show_default=True, metavar="RATE",
              help="With --apply: at most this many bytes moved per second.")
@click.option("--top", type=click.IntRange(1), default=20, show_default=True, help="Regions shown in the table.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def numa(input_path, target_id, snapshot, time_range, samples, min_reports, min_share, min_age, do_apply, quota,
         top, as_json) -> None:
    """Which NUMA nodes access each region, where its pages live, and what to move (the target must still run)."""
    quota_rate = parse_rate(quota, "--quota")
    result = numa_mod.numa(read_record(input_path), target_id, snapshot, _time_range(time_range), samples,
                           min_reports, min_share, min_age)
    if do_apply and not result.placement_known:
        raise DamonBpfError(f"cannot --apply: {result.note}")
    if do_apply:
        numa_mod.apply(result, quota_rate)
    if as_json:
        _json_out(numa_mod.to_json(result))
        return
    Console().print(numa_mod.table(result, top))
    if do_apply:
        click.echo(numa_mod.moved_line(result))
