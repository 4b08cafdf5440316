/* accessgen: a workload with known memory accesses, for tests and benchmarks.
 *
 *   accessgen [--wait] [--huge] [--duration SECONDS] NAME:CPU:MODE:KIB:PASSES ...
 *
 * Each spec starts one thread named NAME, pinned to CPU (-1: not pinned), that maps KIB KiB of fresh
 * anonymous memory (no huge pages) and, PASSES times (0: until --duration runs out), touches every
 * page once (MODE r = read, w = write) and then drops the pages with MADV_DONTNEED, so every touch
 * is a page fault. MODE c (cold) writes its range once before the threads start and then only
 * sleeps until --duration runs out: mapped, resident, and never touched while monitored. MODE W and R
 * (steady) write their range once before the threads start, like c, and then write (W) or read (R) every
 * page per pass WITHOUT dropping the pages: after start-up no touch faults by itself, which is what the
 * samplers (soft-dirty, NUMA hinting) must make visible. MODE s (shared) writes and drops, like w, one range
 * that every s thread shares (mapped once, KIB of the largest s spec, far from the other mappings at
 * SHARED_HINT so no DAMON region spans it and a thread's own range); MODE S is its steady form (written
 * once before the threads start, then rewritten without dropping, like W). The ground truth is printed as JSON on stdout before the threads start:
 *   {"pid":P,"page_size":S,"threads":[{"name":..,"tid":..,"cpu":..,"mode":"w","start":A,"end":B},..]}
 * With --wait the threads start only after a line is read from stdin (so a tracer can attach first).
 * With --huge the ranges of the c, W and R threads are 2 MiB-aligned and asked for transparent huge pages
 * (MADV_HUGEPAGE), and those threads map and first write them one after another in the order of their specs:
 * ranges written at the same time get interleaved frames, which a physical-address monitor cannot tell
 * apart (tests/test_vm_paddr.py). Each after the first writes a 4 MiB spacer first and unmaps it once its
 * range is written: ranges written in turn on a freshly booted machine got directly adjacent frames, and the
 * spacer's freed frames leave a gap between them. Other modes are unchanged by it.
 * At the end one more JSON line gives each thread's touches and the elapsed time:
 *   {"elapsed_s":T,"threads":[{"tid":..,"touches":N,"go_ns":G,"done_ns":D},..]}
 * where [go_ns, done_ns] (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns) is when the thread made its passes.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct worker {
	char name[16];
	int cpu;
	char mode;
	size_t bytes;
	long passes;
	int order;         /* --huge: its place among the c, W and R threads (-1: not one of them) */
	char *mem;
	pid_t tid;
	long touches;
	long long go_ns;   /* CLOCK_MONOTONIC, as bpf_ktime_get_ns(): when this thread began its passes */
	long long done_ns; /* ... and when it finished them */
	pthread_t thread;
};

static pthread_barrier_t ready, go;
static char *shared_mem;     /* the range of the s threads */
static size_t shared_bytes;
#define SHARED_HINT ((void *)0x100000000000UL) /* 16 TiB: below the mmap area, above the heap */
static double duration_s;
static long page_size;
#define HUGE_SIZE (2UL << 20)
static int huge;             /* --huge */
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_done = PTHREAD_COND_INITIALIZER;
static int turn;             /* --huge: the order of the c, W or R thread whose turn it is to fill its range */
#define SPACER_BYTES (2 * HUGE_SIZE)
static char *spacer;         /* --huge: written by the thread in its turn, before its range (see the top) */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Pinned from creation, so even the thread's first instruction runs on its CPU. */
static void start_pinned(struct worker *w, void *(*fn)(void *))
{
	pthread_attr_t attr;
	cpu_set_t set;
	pthread_attr_init(&attr);
	if (w->cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	}
	if (pthread_create(&w->thread, &attr, fn, w)) {
		fprintf(stderr, "accessgen: cannot start thread %s on CPU %d\n", w->name, w->cpu);
		exit(2);
	}
	pthread_attr_destroy(&attr);
}

static void one_pass(struct worker *w)
{
	volatile char *p = w->mem;
	char sink = 0;
	for (size_t off = 0; off < w->bytes; off += page_size) {
		if (w->mode == 'w')
			p[off] = 1;
		else
			sink += p[off];
	}
	(void)sink;
	w->touches += w->bytes / page_size;
	madvise(w->mem, w->bytes, MADV_DONTNEED);
}

/* --huge: a range on 2 MiB boundaries (mapped 2 MiB larger, the slack unmapped), asked for huge pages. */
static char *map_huge(size_t bytes)
{
	char *raw = mmap(NULL, bytes + HUGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return raw;
	char *mem = (char *)(((unsigned long)raw + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1));
	if (mem > raw)
		munmap(raw, mem - raw);
	munmap(mem + bytes, raw + HUGE_SIZE - mem);
	madvise(mem, bytes, MADV_HUGEPAGE);
	return mem;
}

/* Name the thread and give it its own fresh range, without huge pages: one fault per small page
 * (with --huge, a c, W or R thread's range gets huge pages). */
static void map_range(struct worker *w)
{
	prctl(PR_SET_NAME, w->name);
	w->tid = syscall(SYS_gettid);
	if (w->order >= 0) {
		w->mem = map_huge(w->bytes);
	} else {
		w->mem = mmap(NULL, w->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (w->mem != MAP_FAILED)
			madvise(w->mem, w->bytes, MADV_NOHUGEPAGE);
	}
	if (w->mem == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
}

/* --huge: wait until the threads before this one have filled their ranges (no-op otherwise). */
static void wait_turn(const struct worker *w)
{
	if (w->order < 0)
		return;
	pthread_mutex_lock(&turn_lock);
	while (turn != w->order)
		pthread_cond_wait(&turn_done, &turn_lock);
	pthread_mutex_unlock(&turn_lock);
	if (w->order > 0) {
		spacer = map_huge(SPACER_BYTES);
		if (spacer == MAP_FAILED) {
			perror("mmap");
			exit(2);
		}
		memset(spacer, 1, SPACER_BYTES);
	}
}

static void end_turn(const struct worker *w)
{
	if (w->order < 0)
		return;
	if (spacer) {
		munmap(spacer, SPACER_BYTES);
		spacer = NULL;
	}
	pthread_mutex_lock(&turn_lock);
	turn++;
	pthread_cond_broadcast(&turn_done);
	pthread_mutex_unlock(&turn_lock);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	wait_turn(w);
	map_range(w);
	if (w->mode == 'c')
		memset(w->mem, 1, w->bytes);
	end_turn(w);
	pthread_barrier_wait(&ready);
	pthread_barrier_wait(&go);
	w->go_ns = now_ns();
	double end = now_s() + duration_s;
	if (w->mode == 'c') {
		while (now_s() < end)
			usleep(10000);
		w->done_ns = now_ns();
		return NULL;
	}
	for (long i = 0; w->passes == 0 ? now_s() < end : i < w->passes; i++)
		one_pass(w);
	w->done_ns = now_ns();
	return NULL;
}

/* Modes W and R run in a thread function of their own, so the code of the r, w and c threads (and
 * their fault rates, which tests depend on) stays exactly as it was. */
static void *run_steady(void *arg)
{
	struct worker *w = arg;
	if (w->mode == 'S') {
		prctl(PR_SET_NAME, w->name);
		w->tid = syscall(SYS_gettid);
		w->mem = shared_mem;
		w->bytes = shared_bytes;
		memset(w->mem, 1, w->bytes); /* mapped before monitoring starts: no first-touch faults later */
	} else {
		wait_turn(w);
		map_range(w);
		memset(w->mem, 1, w->bytes);
		end_turn(w);
	}
	pthread_barrier_wait(&ready);
	pthread_barrier_wait(&go);
	w->go_ns = now_ns();
	double end = now_s() + duration_s;
	volatile char *p = w->mem;
	char sink = 0;
	for (long i = 0; w->passes == 0 ? now_s() < end : i < w->passes; i++) {
		for (size_t off = 0; off < w->bytes; off += page_size) {
			if (w->mode != 'R')
				p[off] = 1;
			else
				sink += p[off];
		}
		w->touches += w->bytes / page_size;
	}
	(void)sink;
	w->done_ns = now_ns();
	return NULL;
}

/* Mode s: the shared range, written and dropped by every s thread. */
static void *run_shared(void *arg)
{
	struct worker *w = arg;
	prctl(PR_SET_NAME, w->name);
	w->tid = syscall(SYS_gettid);
	w->mem = shared_mem;
	w->bytes = shared_bytes;
	pthread_barrier_wait(&ready);
	pthread_barrier_wait(&go);
	w->go_ns = now_ns();
	double end = now_s() + duration_s;
	volatile char *p = w->mem;
	for (long i = 0; w->passes == 0 ? now_s() < end : i < w->passes; i++) {
		for (size_t off = 0; off < w->bytes; off += page_size)
			p[off] = 1;
		w->touches += w->bytes / page_size;
		madvise(w->mem, w->bytes, MADV_DONTNEED);
	}
	w->done_ns = now_ns();
	return NULL;
}

static void map_shared(struct worker *workers, int n)
{
	for (int i = 0; i < n; i++)
		if (strchr("sS", workers[i].mode) && workers[i].bytes > shared_bytes)
			shared_bytes = workers[i].bytes;
	if (!shared_bytes)
		return;
	shared_mem = mmap(SHARED_HINT, shared_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shared_mem == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	madvise(shared_mem, shared_bytes, MADV_NOHUGEPAGE);
}

static int parse_spec(const char *spec, struct worker *w)
{
	char name[16];
	long kib;
	if (sscanf(spec, "%15[^:]:%d:%c:%ld:%ld", name, &w->cpu, &w->mode, &kib, &w->passes) != 5)
		return -1;
	if (!strchr("rwcWRsS", w->mode) || kib <= 0 || w->passes < 0)
		return -1;
	strcpy(w->name, name);
	w->bytes = (size_t)kib * 1024;
	return 0;
}

int main(int argc, char **argv)
{
	int wait = 0, n = 0;
	struct worker *workers = calloc(argc, sizeof(*workers));
	page_size = sysconf(_SC_PAGESIZE);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--wait"))
			wait = 1;
		else if (!strcmp(argv[i], "--huge"))
			huge = 1;
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			duration_s = atof(argv[++i]);
		else if (parse_spec(argv[i], &workers[n++])) {
			fprintf(stderr, "accessgen: bad thread spec '%s' (NAME:CPU:r|w|c|W|R|s|S:KIB:PASSES)\n", argv[i]);
			return 2;
		}
	}
	if (!n) {
		fprintf(stderr, "usage: accessgen [--wait] [--huge] [--duration S] NAME:CPU:r|w|c|W|R|s|S:KIB:PASSES ...\n");
		return 2;
	}
	for (int i = 0, order = 0; i < n; i++)
		workers[i].order = huge && strchr("cWR", workers[i].mode) ? order++ : -1;
	pthread_barrier_init(&ready, NULL, n + 1);
	pthread_barrier_init(&go, NULL, n + 1);
	map_shared(workers, n);
	for (int i = 0; i < n; i++)
		start_pinned(&workers[i], workers[i].mode == 's' ? run_shared
					  : strchr("WRS", workers[i].mode) ? run_steady : run);
	pthread_barrier_wait(&ready);

	printf("{\"pid\":%d,\"page_size\":%ld,\"threads\":[", getpid(), page_size);
	for (int i = 0; i < n; i++)
		printf("%s{\"name\":\"%s\",\"tid\":%d,\"cpu\":%d,\"mode\":\"%c\",\"start\":%lu,\"end\":%lu}",
		       i ? "," : "", workers[i].name, workers[i].tid, workers[i].cpu, workers[i].mode,
		       (unsigned long)workers[i].mem, (unsigned long)(workers[i].mem + workers[i].bytes));
	printf("]}\n");
	fflush(stdout);
	if (wait) {
		char line[64];
		if (!fgets(line, sizeof(line), stdin))
			return 3;
	}
	double start = now_s();
	pthread_barrier_wait(&go);
	for (int i = 0; i < n; i++)
		pthread_join(workers[i].thread, NULL);
	printf("{\"elapsed_s\":%.6f,\"threads\":[", now_s() - start);
	for (int i = 0; i < n; i++)
		printf("%s{\"tid\":%d,\"touches\":%ld,\"go_ns\":%lld,\"done_ns\":%lld}", i ? "," : "",
		       workers[i].tid, workers[i].touches, workers[i].go_ns, workers[i].done_ns);
	printf("]}\n");
	return 0;
}
