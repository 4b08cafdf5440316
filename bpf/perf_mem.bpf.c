/* Source "perf-mem": hardware memory-access sampling (Intel PEBS mem-loads / mem-stores, AMD IBS op)
 * through perf events with sample_type ADDR. Whether an access is a write is known from which event
 * fired, so each event kind has its own entry point. A sample without a data address (an IBS op that
 * is not a load or store) is not an access and is dropped. The same entry points also take the
 * software page-faults event, which is how the plumbing is tested on machines with no PMU. */
#include <uapi/linux/bpf_perf_event.h>
/* damon-bpf: paste report_common.bpf.c (the shared maps, filters and probes; see that file) */

static __always_inline int on_sample(struct bpf_perf_event_data *ctx, u8 write)
{
	if (!ctx->addr)
		return 0;
	return report_access(ctx->addr, write, PT_REGS_IP(&ctx->regs));   /* the sampled instruction */
}

int on_read(struct bpf_perf_event_data *ctx) { return on_sample(ctx, ACCESS_READ); }
int on_write(struct bpf_perf_event_data *ctx) { return on_sample(ctx, ACCESS_WRITE); }
int on_unknown(struct bpf_perf_event_data *ctx) { return on_sample(ctx, ACCESS_UNKNOWN); }
