/* mapgen: touches three kinds of memory on purpose, for the mapping names in reports.
 *
 *   mapgen FILE MIB
 *
 * Creates FILE (MIB MiB), maps it shared and reads every page; maps MIB MiB of anonymous memory and
 * writes every page; grows the heap by MIB MiB with sbrk and writes every page. Each is touched three
 * times a second (dropping the pages in between, so every touch is a page fault) for 2 s. The ground truth
 * is printed as one JSON line before the touches start:
 *   {"pid":P,"file":[A,B],"anon":[A,B],"heap":[A,B]}
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile char sink;

static void touch(char *mem, size_t bytes, long page, int write)
{
	for (size_t off = 0; off < bytes; off += page) {
		if (write)
			mem[off] = 1;
		else
			sink += mem[off];
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: mapgen FILE MIB\n");
		return 2;
	}
	long page = sysconf(_SC_PAGESIZE);
	size_t bytes = (size_t)atol(argv[2]) << 20;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, bytes) != 0) {
		perror(argv[1]);
		return 1;
	}
	char *file = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	char *anon = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *heap = sbrk(bytes);
	if (file == MAP_FAILED || anon == MAP_FAILED || heap == (void *)-1) {
		perror("map");
		return 1;
	}
	printf("{\"pid\":%d,\"file\":[%lu,%lu],\"anon\":[%lu,%lu],\"heap\":[%lu,%lu]}\n", getpid(),
	       (unsigned long)file, (unsigned long)(file + bytes), (unsigned long)anon, (unsigned long)(anon + bytes),
	       (unsigned long)heap, (unsigned long)(heap + bytes));
	fflush(stdout);
	for (int round = 0; round < 6; round++) {
		touch(file, bytes, page, 0);
		touch(anon, bytes, page, 1);
		touch(heap, bytes, page, 1);
		usleep(300000);
		madvise(file, bytes, MADV_DONTNEED);
		madvise(anon, bytes, MADV_DONTNEED);
		madvise(heap, bytes, MADV_DONTNEED);
	}
	return 0;
}
