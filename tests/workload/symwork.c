/* symwork: memory of every kind, each touched by its own function, for the symbolisation tests.
 *
 *   symwork FILE KIB     (built with symlib.c as libsymlib.so: -L DIR -lsymlib -Wl,-rpath,DIR)
 *
 * Maps KIB KiB of each, at fixed far-apart addresses so no monitoring region spans two of them:
 *   file    FILE (created, KIB long) mapped shared, written by touch_file
 *   anon    anonymous memory, written by touch_anon
 *   heap    brk heap (malloc with mmap disabled), written by touch_heap
 *   libc    anonymous memory, written by libc's memset
 *   lib     anonymous memory, written by lib_fill in libsymlib.so
 * Prints {"pid":P,"file":[S,E],"anon":[S,E],"heap":[S,E],"libc":[S,E],"lib":[S,E]} first, then touches
 * every page once (a fault each), in that order, prints {"done":true} and lives 0.5 s more: a process must
 * live until the monitor reads its /proc/PID/maps after its exec for its code to be named.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void lib_fill(char *mem, size_t bytes);   /* symlib.c */

static long page_size;

static char *map_at(unsigned long hint, size_t bytes, int fd)
{
	int flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
	char *mem = mmap((void *)hint, bytes, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE, fd, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return mem;
}

__attribute__((noinline)) void touch_file(volatile char *mem, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += page_size)
		mem[off] = 1;
}

__attribute__((noinline)) void touch_anon(volatile char *mem, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += page_size)
		mem[off] = 2;
}

__attribute__((noinline)) void touch_heap(volatile char *mem, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += page_size)
		mem[off] = 3;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: symwork FILE KIB\n");
		return 2;
	}
	page_size = sysconf(_SC_PAGESIZE);
	size_t bytes = (size_t)atol(argv[2]) * 1024;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, bytes)) {
		perror(argv[1]);
		return 1;
	}
	char *file = map_at(0x200000000000UL, bytes, fd);
	char *anon = map_at(0x300000000000UL, bytes, -1);
	char *libc = map_at(0x400000000000UL, bytes, -1);
	char *lib = map_at(0x500000000000UL, bytes, -1);
	mallopt(M_MMAP_THRESHOLD, 1 << 30);   /* the heap buffer comes from brk */
	mallopt(M_TOP_PAD, 0);
	char *heap = malloc(bytes + page_size);
	heap += page_size - ((unsigned long)heap % page_size);   /* whole pages: none shared with malloc's header */
	printf("{\"pid\":%d,\"file\":[%lu,%lu],\"anon\":[%lu,%lu],\"heap\":[%lu,%lu],\"libc\":[%lu,%lu],"
	       "\"lib\":[%lu,%lu]}\n", getpid(),
	       (unsigned long)file, (unsigned long)file + bytes, (unsigned long)anon, (unsigned long)anon + bytes,
	       (unsigned long)heap, (unsigned long)heap + bytes, (unsigned long)libc, (unsigned long)libc + bytes,
	       (unsigned long)lib, (unsigned long)lib + bytes);
	fflush(stdout);
	touch_file(file, bytes);
	touch_anon(anon, bytes);
	touch_heap(heap, bytes);
	memset(libc, 4, bytes);
	lib_fill(lib, bytes);
	printf("{\"done\":true}\n");
	fflush(stdout);
	usleep(500000);
	return 0;
}
