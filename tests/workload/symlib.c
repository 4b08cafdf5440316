/* libsymlib.so for symwork.c: a shared-library function that writes a buffer, one page at a time. */
#include <stddef.h>
#include <unistd.h>

__attribute__((noinline)) void lib_fill(char *mem, size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE);
	for (size_t off = 0; off < bytes; off += page)
		((volatile char *)mem)[off] = 5;
}
