/* Source "perf-fault": the perf software page-faults event with sample_period 1. The sample gives the
 * address, not the kind of access, so writes are reported as unknown rather than guessed. The sample's
 * registers are those of the faulting context: their ip is the faulting instruction (a kernel address for
 * a fault the kernel takes on a user address, e.g. in copy_to_user). */
#include <uapi/linux/bpf_perf_event.h>
/* damon-bpf: paste report_common.bpf.c (the shared maps, filters and probes; see that file) */

int on_page_fault(struct bpf_perf_event_data *ctx)
{
	return report_access(ctx->addr, ACCESS_UNKNOWN, PT_REGS_IP(&ctx->regs));
}
