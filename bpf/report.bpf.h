/* Shared part of every page-fault source (pasted into each source by damon_bpf/sources/program.py, since
 * bcc only rewrites map calls in the main text): target selection, the ordered sample filters, the
 * per-CPU accounting and the ring buffer. A source includes this file and calls report_access().
 *
 * Compile-time parameters (set by damon_bpf/sources/program.py): RING_PAGES, FOLLOW_CHILDREN.
 */
#include <uapi/linux/ptrace.h>
#include "access.h"

BPF_RINGBUF_OUTPUT(accesses, RING_PAGES);
BPF_HASH(targets, u32, u8, 65536);        /* thread group ids being monitored */
BPF_HASH(pending_exec, u32, u8, 64);      /* processes we started: targets from their exec on */
BPF_ARRAY(filters, struct sample_filter, MAX_FILTERS);
BPF_HASH(filter_tids, u64, u8, 65536);    /* (filter index << 32 | tid) for FILTER_THREADS */
BPF_PERCPU_ARRAY(counters, struct counters, 1);

static __always_inline int filter_matches(struct sample_filter *filter, u32 index, u32 cpu, u32 tid, u8 write)
{
	if (filter->type == FILTER_CPUMASK) {
		if (cpu >= MAX_CPUS)
			return 0;
		u32 word = cpu / 64;
		/* Keep the mask below in the program: clang drops it after the check above, and the 6.1
		 * verifier does not carry that check over to the index ("invalid access to map value"). */
		asm volatile("" : "+r"(word));
		return (filter->cpus[word & (MAX_CPUS / 64 - 1)] >> (cpu % 64)) & 1;
	}
	if (filter->type == FILTER_THREADS) {
		u64 key = ((u64)index << 32) | tid;
		return filter_tids.lookup(&key) != NULL;
	}
	return write == ACCESS_WRITE; /* FILTER_WRITE */
}

/* DAMON RFC semantics as documented (docs/design.md §6): a report passes iff every
 * filter is satisfied; filters run in order and the first unsatisfied one rejects (and counts) it. */
static __always_inline int passes_filters(struct counters *count, u32 cpu, u32 tid, u8 write)
{
#pragma unroll
	for (u32 i = 0; i < MAX_FILTERS; i++) {
		u32 index = i;
		struct sample_filter *filter = filters.lookup(&index);
		if (!filter || filter->type == 0)
			return 1;
		int match = filter_matches(filter, i, cpu, tid, write);
		int satisfied = filter->allow ? (match == filter->matching) : (match != filter->matching);
		if (!satisfied) {
			count->slot[COUNTER_FILTER_BASE + 2 * i + 1]++;
			return 0;
		}
		count->slot[COUNTER_FILTER_BASE + 2 * i]++;
	}
	return 1;
}

static __always_inline int report_access(u64 addr, u8 write)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32, tid = (u32)pid_tgid;
	if (!targets.lookup(&tgid))
		return 0;
	u32 zero = 0;
	struct counters *count = counters.lookup(&zero);
	if (!count)
		return 0;
	u32 cpu = bpf_get_smp_processor_id();
	count->slot[COUNTER_SEEN]++;
	if (!passes_filters(count, cpu, tid, write))
		return 0;
	struct access_record *record = accesses.ringbuf_reserve(sizeof(*record));
	if (!record) {
		count->slot[COUNTER_LOST]++;
		return 0;
	}
	record->addr = addr;
	record->time_ns = bpf_ktime_get_ns();
	record->cpu = cpu;
	record->pid = tgid;
	record->tid = tid;
	record->write = write;
	record->pad0 = 0;
	record->pad1 = 0;
	/* No wakeup: the reader drains on a timer. A wakeup per event costs an IPI on the faulting
	 * CPU and slowed the workload 1.6-2.7x on the CI machine (docs/design.md §9). */
	accesses.ringbuf_submit(record, BPF_RB_NO_WAKEUP);
	count->slot[COUNTER_DELIVERED]++;
	return 0;
}

/* A process we launched becomes a target when it execs, so its first instruction is traced and
 * nothing of the launcher is. */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (pending_exec.lookup(&tgid)) {
		u8 one = 1;
		targets.update(&tgid, &one);
		pending_exec.delete(&tgid);
	}
	return 0;
}

#if FOLLOW_CHILDREN
/* Children join in the kernel, before they run, so their first faults are not missed while user
 * space hears of the fork. A new thread's id lands here too; user space removes ids that exit. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (targets.lookup(&parent)) {
		u32 child = args->child_pid;
		u8 one = 1;
		targets.update(&child, &one);
	}
	return 0;
}
#endif
