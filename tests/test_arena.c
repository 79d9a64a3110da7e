/* Tests of the per-message arena and its growable buffer. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"

Test(arena, allocations_are_aligned_and_distinct)
{
	arena_t *a = arena_new(0);
	char *p = arena_alloc(a, 3), *q = arena_alloc(a, 5);
	cr_assert_eq((uintptr_t)p % 16, 0);
	cr_assert_eq((uintptr_t)q % 16, 0);
	cr_assert(q >= p + 3 || q + 5 <= p);
	arena_free(a);
}

Test(arena, big_blocks_do_not_waste_the_current_chunk)
{
	arena_t *a = arena_new(4096);
	char *small1 = arena_alloc(a, 16);
	char *big = arena_alloc(a, 100000);
	memset(big, 'x', 100000);
	char *small2 = arena_alloc(a, 16);
	/* The small allocation after the big one stays in the first chunk. */
	cr_assert_eq(small2, small1 + 16);
	cr_assert_geq(arena_used(a), 100032);
	arena_free(a);
}

Test(arena, strings_and_printf_are_copied)
{
	arena_t *a = arena_new(0);
	char src[] = "hello";
	char *s = arena_strdup(a, src);
	src[0] = 'j';
	cr_assert_str_eq(s, "hello");
	cr_assert_str_eq(arena_strndup(a, "abcdef", 3), "abc");
	cr_assert_str_eq(arena_sprintf(a, "%d-%s", 42, "x"), "42-x");
	arena_free(a);
}

Test(arena, reset_keeps_working)
{
	arena_t *a = arena_new(4096);
	for (int i = 0; i < 1000; i++)
		arena_alloc(a, 100);
	arena_reset(a);
	cr_assert_eq(arena_used(a), 0);
	cr_assert_str_eq(arena_strdup(a, "again"), "again");
	arena_free(a);
}

Test(abuf, grows_and_stays_terminated)
{
	arena_t *a = arena_new(0);
	abuf_t b;
	abuf_init(&b, a, 1);
	for (int i = 0; i < 10000; i++)
		abuf_putc(&b, 'a' + i % 26);
	cr_assert_eq(b.len, 10000);
	cr_assert_eq(b.data[10000], '\0');
	cr_assert_eq(b.data[27], 'b');
	abuf_printf(&b, "[%s]", "end");
	cr_assert_str_eq(b.data + 10000, "[end]");
	arena_free(a);
}

Test(arena, grow_doubles_and_keeps_the_elements)
{
	arena_t *a = arena_new(0);
	int *v = NULL;
	size_t n = 0, cap = 0;
	for (int i = 0; i < 1000; i++) {
		if (n == cap) {
			size_t before = cap;
			v = arena_grow(a, v, n, &cap, sizeof(*v), 4);
			cr_assert_eq(cap, before ? before * 2 : 4);
		}
		v[n++] = i;
	}
	cr_assert_eq(cap, 1024);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(v[i], i);
	arena_free(a);
}
