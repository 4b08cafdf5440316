/* The one definition of an access report, shared by the BPF programs and Python.
 *
 * damon_bpf/access.py builds its numpy dtype by reading the struct below, so a field
 * added here reaches Python with no second edit. Keep one field per line, in the form
 * "<type> <name>;" with types from the table in access.py, and keep the size a multiple of 8
 * (ring-buffer records are 8-byte aligned, and the reader relies on a fixed stride).
 */
#ifndef DAMON_BPF_ACCESS_H
#define DAMON_BPF_ACCESS_H

struct access_record {
	__u64 addr;      /* faulting virtual address */
	__u64 time_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 cpu;
	__u32 pid;       /* thread group id (the process) */
	__u32 tid;       /* thread id */
	__u8 write;      /* ACCESS_READ, ACCESS_WRITE or ACCESS_UNKNOWN */
	__u8 pad0;
	__u16 pad1;
	__u64 ip;        /* the faulting instruction's address (user or, for perf-fault, kernel) */
};

#define ACCESS_READ 0
#define ACCESS_WRITE 1
#define ACCESS_UNKNOWN 2   /* the source cannot tell (perf page-fault events) */

/* Sample filters (DAMON RFC sample control; see docs/design.md §6). */
#define MAX_FILTERS 8
#define FILTER_CPUMASK 1
#define FILTER_THREADS 2
#define FILTER_WRITE 3
#define MAX_CPUS 1024

struct sample_filter {
	__u32 type;      /* FILTER_*; 0 ends the list */
	__u8 matching;
	__u8 allow;
	__u16 pad;
	__u64 cpus[MAX_CPUS / 64];  /* FILTER_CPUMASK argument: bitmap of CPUs */
};

/* Slots of the per-CPU counters (one array value, so an event costs one map lookup). Filter i uses
 * COUNTER_FILTER_BASE + 2*i (passed) and COUNTER_FILTER_BASE + 2*i + 1 (rejected). */
#define COUNTER_SEEN 0       /* reports of target processes, before any filter */
#define COUNTER_DELIVERED 1  /* written into the ring buffer */
#define COUNTER_LOST 2       /* passed every filter but the ring buffer was full */
#define COUNTER_FILTER_BASE 3
#define NR_COUNTERS (COUNTER_FILTER_BASE + 2 * MAX_FILTERS)

struct counters {
	__u64 slot[NR_COUNTERS];
};

/* A lifecycle record: a followed process forked, exec'd or exited. Written by the BPF side into its
 * own small ring ("lifecycle") and drained before the accesses ring's batch is handed on, so user
 * space knows of a process before it handles that process's reports. Same parsing rules as above;
 * comm is the only array (char, 16 = TASK_COMM_LEN). */
struct lifecycle_record {
	__u64 time_ns;   /* bpf_ktime_get_ns(): the clock of access_record.time_ns */
	__u32 kind;      /* LIFECYCLE_FORK, LIFECYCLE_EXEC or LIFECYCLE_EXIT */
	__u32 pid;       /* thread group id of the process */
	__u32 ppid;      /* fork: the parent's thread group id; 0 otherwise (not known to the program) */
	__u32 pad0;
	char comm[16];   /* the process's command name at that moment */
	__u64 cgroup_id; /* join: the cgroup v2 it reported from (its directory's inode number); else 0 */
};

#define LIFECYCLE_FORK 1
#define LIFECYCLE_EXEC 2
#define LIFECYCLE_EXIT 3
#define LIFECYCLE_JOIN 4   /* a process of a followed cgroup became a target (its first report there) */
#define LIFECYCLE_LEAVE 5  /* a cgroup-joined target was found outside every followed cgroup */
#define LIFECYCLE_RING_PAGES 256   /* 1 MiB with 4 KiB pages: ~21,000 records between two drains */

/* Values of the targets map: why a process is a target. A cgroup member stays one only while it is in
 * a followed cgroup (checked at each of its reports); the others until they exit. */
#define TARGET_BY_PID 1
#define TARGET_BY_CGROUP 2
#define TARGET_NEVER 3     /* damon-bpf itself, when it runs inside a followed cgroup */
/* Followed cgroups (--cgroup) sit at most at this many distinct depths of the hierarchy: a report
 * costs one ancestor lookup per depth. */
#define MAX_CGROUP_LEVELS 4

#endif
