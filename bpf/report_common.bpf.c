/* Shared part of every access source, not a header: damon_bpf/sources/program.py pastes it where a
 * source says "damon-bpf: paste report_common.bpf.c", because bcc rewrites map calls and tracepoint
 * probes only in the main text, never in an #included file. It holds target selection, the ordered
 * sample filters, the per-CPU accounting and the ring buffers; a source calls report_access(address, kind, instruction pointer).
 *
 * Compile-time parameters (set by damon_bpf/sources/program.py): RING_PAGES, FOLLOW_CHILDREN,
 * FOLLOW_CGROUPS, and HAVE_GROUP_DEAD where sched_process_exit says whether the whole thread group is
 * dead (6.16+).
 *
 * Lifecycle: a target's fork (of a new process, not a thread), exec and exit are written into a
 * second ring, "lifecycle", which user space drains after the accesses ring and before handing the
 * accesses on. A lifecycle record is committed before the process it announces runs (fork) or
 * returns to user mode (exec), so every access record read is preceded by its process's record.
 */
#include <uapi/linux/ptrace.h>
#include "access.h"

BPF_RINGBUF_OUTPUT(accesses, RING_PAGES);
BPF_HASH(targets, u32, u8, 65536);        /* thread group id -> TARGET_BY_PID or TARGET_BY_CGROUP */
BPF_HASH(pending_exec, u32, u8, 64);      /* processes we started: targets from their exec on */
BPF_ARRAY(filters, struct sample_filter, MAX_FILTERS);
BPF_HASH(filter_tids, u64, u8, 65536);    /* (filter index << 32 | tid) for FILTER_THREADS */
BPF_PERCPU_ARRAY(counters, struct counters, 1);
BPF_RINGBUF_OUTPUT(lifecycle, LIFECYCLE_RING_PAGES);
BPF_PERCPU_ARRAY(lifecycle_lost, u64, 1);  /* lifecycle records the full ring refused */
BPF_HASH(cgroups, u64, u8, 64);            /* followed cgroup v2 ids (--cgroup) */
BPF_ARRAY(cgroup_levels, u32, MAX_CGROUP_LEVELS);  /* their depths + 1, ascending; 0 ends the list */

#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif

static __always_inline void report_lifecycle(u32 kind, u32 pid, u32 ppid, u64 cgroup_id)
{
	struct lifecycle_record *record = lifecycle.ringbuf_reserve(sizeof(*record));
	if (!record) {
		u32 zero = 0;
		u64 *lost = lifecycle_lost.lookup(&zero);
		if (lost)
			(*lost)++;
		return;
	}
	record->time_ns = bpf_ktime_get_ns();
	record->kind = kind;
	record->pid = pid;
	record->ppid = ppid;
	record->pad0 = 0;
	record->cgroup_id = cgroup_id;
	bpf_get_current_comm(&record->comm, sizeof(record->comm));
	lifecycle.ringbuf_submit(record, BPF_RB_NO_WAKEUP);
}

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

#if FOLLOW_CGROUPS
/* The followed cgroup the current task is in (itself or, descendants being followed, an ancestor of
 * its cgroup), or 0. Shallowest depth first, so a cgroup followed inside another followed one counts
 * for the outer one. */
static __always_inline u64 followed_cgroup(void)
{
#pragma unroll
	for (u32 i = 0; i < MAX_CGROUP_LEVELS; i++) {
		u32 index = i;
		u32 *level = cgroup_levels.lookup(&index);
		if (!level || *level == 0)
			return 0;
		u64 id = bpf_get_current_ancestor_cgroup_id(*level - 1);
		if (cgroups.lookup(&id))
			return id;
	}
	return 0;
}

/* A process joins when it reports from inside a followed cgroup, and a cgroup member leaves when it
 * reports from outside them all (moved out); each is told in the lifecycle ring before the report.
 * Once user space stops following (no levels left: the run's end), nobody joins or leaves. */
static __always_inline int cgroup_target(u32 tgid, u8 *mark)
{
	u32 zero = 0;
	u32 *following = cgroup_levels.lookup(&zero);
	if (!following || *following == 0)
		return 0;
	u64 cgroup_id = followed_cgroup();
	if (cgroup_id && !mark) {
		u8 by_cgroup = TARGET_BY_CGROUP;
		targets.update(&tgid, &by_cgroup);
		report_lifecycle(LIFECYCLE_JOIN, tgid, 0, bpf_get_current_cgroup_id());
	} else if (!cgroup_id && mark) {
		targets.delete(&tgid);
		report_lifecycle(LIFECYCLE_LEAVE, tgid, 0, 0);
	}
	return cgroup_id != 0;
}
#endif

/* Whether the current process is a target (FOLLOW_CGROUPS: one joins or leaves here). */
static __always_inline int is_target(u32 tgid)
{
	u8 *mark = targets.lookup(&tgid);
#if FOLLOW_CGROUPS
	if (!mark || *mark == TARGET_BY_CGROUP)
		return cgroup_target(tgid, mark);
#endif
	return mark != NULL && *mark != TARGET_NEVER;
}

static __always_inline int report_access(u64 addr, u8 write, u64 ip)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32, tid = (u32)pid_tgid;
	if (!is_target(tgid))
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
	record->ip = ip;
	/* No wakeup: the reader drains on a timer. A wakeup per event costs an IPI on the faulting
	 * CPU and slowed the workload 1.6-2.7x on the CI machine (docs/design.md §9). */
	accesses.ringbuf_submit(record, BPF_RB_NO_WAKEUP);
	count->slot[COUNTER_DELIVERED]++;
	return 0;
}

/* A process we launched becomes a target when it execs, so its first instruction is traced and
 * nothing of the launcher is (user space marks it pending only once the launcher itself runs). */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (pending_exec.lookup(&tgid)) {
		u8 by_pid = TARGET_BY_PID;
		targets.update(&tgid, &by_pid);
		pending_exec.delete(&tgid);
	} else if (!targets.lookup(&tgid)) {
		return 0;
	}
	report_lifecycle(LIFECYCLE_EXEC, tgid, 0, 0);
	return 0;
}

/* A target leaves the map when it exits, so a later process given the same pid is never traced.
 * Before 6.16 the tracepoint cannot say whether the whole thread group is dead: the record then tells
 * of the main thread's exit, the pid stays, and user space removes it when the last thread is gone
 * (cn_proc and /proc; damon_bpf/sources/targets.py). */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32;
#if HAVE_GROUP_DEAD
	if (!args->group_dead)          /* the last thread of the process */
		return 0;
#else
	if ((u32)pid_tgid != tgid)      /* the thread-group leader */
		return 0;
#endif
	if (!targets.lookup(&tgid))
		return 0;
#if HAVE_GROUP_DEAD
	targets.delete(&tgid);
#endif
	report_lifecycle(LIFECYCLE_EXIT, tgid, 0, 0);
	return 0;
}

#if FOLLOW_CHILDREN
/* Children join in the kernel before they run, so none of their faults is missed. task_newtask fires
 * in the parent, inside copy_process, and gives the clone flags: a new thread is not a new target
 * (its process already is). A child is a target for its parent's reason (a cgroup member's child
 * stays one while in a followed cgroup). */
TRACEPOINT_PROBE(task, task_newtask)
{
	if (args->clone_flags & CLONE_THREAD)
		return 0;
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	u8 *mark = targets.lookup(&parent);
	if (!mark)
		return 0;
	u32 child = args->pid;
	u8 reason = *mark;
	targets.update(&child, &reason);
	report_lifecycle(LIFECYCLE_FORK, child, parent, 0);
	return 0;
}
#endif
