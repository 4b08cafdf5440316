/* One region of kernel DAMON's damon:damon_aggregated tracepoint, as damon_aggregated.bpf.c hands it
 * to Python. damon_bpf/sources/kdamond.py builds its numpy dtype by parsing this struct (the same
 * rules as access.h: one "<type> <name>;" per line, __uN types, size a multiple of 8). */
#ifndef DAMON_BPF_DAMON_ROW_H
#define DAMON_BPF_DAMON_ROW_H

struct damon_row {
	__u64 time_ns;      /* bpf_ktime_get_ns() when the row was seen */
	__u64 target_id;
	__u64 start;
	__u64 end;
	__u32 nr_regions;
	__u32 nr_accesses;
	__u32 age;
	__u32 pad;
};

#endif
