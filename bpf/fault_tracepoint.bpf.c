/* Source "tracepoint": exceptions:page_fault_user (x86). Fires once per user-mode page fault;
 * error_code bit 1 is set for a write; ip is the faulting instruction. */
/* damon-bpf: paste report_common.bpf.c (the shared maps, filters and probes; see that file) */

#define X86_PF_WRITE 0x2

TRACEPOINT_PROBE(exceptions, page_fault_user)
{
	return report_access(args->address, (args->error_code & X86_PF_WRITE) ? ACCESS_WRITE : ACCESS_READ,
			     args->ip);
}
