#!/bin/bash
# A quick look at a guest kernel, meant for `tests/vm/run [--kernel K] -- tests/vm/smoke.sh`:
# the kernel, DAMON's sysfs, the NUMA nodes, and the time bcc takes to compile and attach a kprobe on
# handle_mm_fault with the system's python3 and the BCC_KERNEL_SOURCE that tests/vm/run exports.
set -u
rc=0
echo "uname -r: $(uname -r)"
echo "BCC_KERNEL_SOURCE=${BCC_KERNEL_SOURCE:-<unset>}"
if ls /sys/kernel/mm/damon/admin; then echo "DAMON sysfs: yes"; else echo "DAMON sysfs: no"; fi
echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
echo "NUMA nodes online: $(cat /sys/devices/system/node/online) ($(ls -d /sys/devices/system/node/node[0-9]* | wc -l) nodes)"
/usr/bin/python3 - <<'EOF' || rc=1
import time
t0 = time.monotonic()
from bcc import BPF
t1 = time.monotonic()
b = BPF(text=r"""
BPF_ARRAY(faults, u64, 1);
int kprobe__handle_mm_fault(struct pt_regs *ctx) {
    int k = 0;
    u64 *v = faults.lookup(&k);
    if (v) __sync_fetch_and_add(v, 1);
    return 0;
}
""")
t2 = time.monotonic()
import mmap
buf = mmap.mmap(-1, 64 << 20)
buf.madvise(mmap.MADV_NOHUGEPAGE)  # one fault per 4 KiB page, whatever THP is set to
for i in range(0, len(buf), 4096):
    buf[i] = 1
time.sleep(0.2)
n = b["faults"][0].value
print(f"import bcc {t1 - t0:.1f} s, compile+attach kprobe:handle_mm_fault {t2 - t1:.1f} s, "
      f"faults seen while touching 64 MiB: {n}")
assert n >= 16384 // 2, n
EOF
exit $rc
