/* Source "damon": the kernel's own DAMON (a kdamond with the vaddr operations, set up through sysfs)
 * reports every region at the end of each aggregation through the damon:damon_aggregated tracepoint.
 * This program copies those rows into a ring buffer with the time, for damon-bpf to assemble into
 * snapshots next to its own. Only the kdamond damon-bpf started is taken (KDAMOND_PID). */

#include "damon_row.h"

BPF_RINGBUF_OUTPUT(rows, 256);
BPF_ARRAY(kdamond, u32, 1);   /* [0] = pid of our kdamond thread */

TRACEPOINT_PROBE(damon, damon_aggregated)
{
	u32 zero = 0;
	u32 *ours = kdamond.lookup(&zero);
	if (!ours || *ours != (u32)bpf_get_current_pid_tgid())
		return 0;
	struct damon_row row = {};
	row.time_ns = bpf_ktime_get_ns();
	row.target_id = args->target_id;
	row.start = args->start;
	row.end = args->end;
	row.nr_regions = args->nr_regions;
	row.nr_accesses = args->nr_accesses;
	row.age = args->age;
	rows.ringbuf_output(&row, sizeof(row), 0);
	return 0;
}
