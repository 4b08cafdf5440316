/* Sources "kprobe" and "fentry": handle_mm_fault(vma, address, flags, regs), any architecture.
 * Only user-mode faults (FAULT_FLAG_USER) count, and a retried fault (FAULT_FLAG_TRIED) is not
 * counted twice, so the events match the tracepoint's. enum fault_flag values since Linux 5.11. */
/* damon-bpf: paste report_common.bpf.c (the shared maps, filters and probes; see that file) */

#define FAULT_FLAG_WRITE 0x1
#define FAULT_FLAG_TRIED 0x20
#define FAULT_FLAG_USER 0x40

/* regs is the user context of the fault (NULL for faults not raised by an instruction, e.g. from
 * get_user_pages, which are not FAULT_FLAG_USER anyway): its ip is the faulting instruction. */
static __always_inline int on_fault(unsigned long address, unsigned int flags, struct pt_regs *regs)
{
	if (!(flags & FAULT_FLAG_USER) || (flags & FAULT_FLAG_TRIED))
		return 0;
	u64 ip = 0;
	if (regs)
		bpf_probe_read_kernel(&ip, sizeof(ip), &PT_REGS_IP(regs));
	return report_access(address, (flags & FAULT_FLAG_WRITE) ? ACCESS_WRITE : ACCESS_READ, ip);
}

#if USE_FENTRY
KFUNC_PROBE(handle_mm_fault, void *vma, unsigned long address, unsigned int flags, void *regs)
{
	return on_fault(address, flags, (struct pt_regs *)regs);
}
#else
int kprobe__handle_mm_fault(struct pt_regs *ctx, void *vma, unsigned long address, unsigned int flags,
			    struct pt_regs *regs)
{
	return on_fault(address, flags, regs);
}
#endif
