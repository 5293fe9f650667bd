/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking helpers: TCP state and lifetimes (Cilium's defaults:
 * SYN 60 s, established 21600 s, FIN/RST 10 s, everything else 60 s), the
 * Maglev 5-tuple hash. Entries carry their expiry (CLOCK_MONOTONIC ns, the
 * clock of bpf_ktime_get_ns); userspace GC deletes expired ones, and an
 * expired entry found by the datapath counts as absent.
 */
#pragma once

#include "lb_parse.h"

static __always_inline __u64 lb_lifetime(__u8 proto, __u8 state)
{
	if (proto != LB_IPPROTO_TCP)
		return LB_LIFE_OTHER;
	if (state == LB_CT_ESTABLISHED)
		return LB_LIFE_TCP_EST;
	if (state == LB_CT_CLOSING)
		return LB_LIFE_TCP_CLOSE;
	return LB_LIFE_TCP_SYN;
}

/* Next TCP state of one direction's entry after a packet with `flags`:
 * FIN or RST closes (sticky), an ACK without SYN establishes (the
 * handshake is done, or the flow was picked up midway). */
static __always_inline __u8 lb_tcp_next(__u8 proto, __u8 state, __u8 flags)
{
	if (proto != LB_IPPROTO_TCP)
		return LB_CT_OPEN;
	if (state == LB_CT_CLOSING || (flags & (LB_TCP_FIN | LB_TCP_RST)))
		return LB_CT_CLOSING;
	if ((flags & LB_TCP_ACK) && !(flags & LB_TCP_SYN))
		return LB_CT_ESTABLISHED;
	return state;
}

/* Refreshes an entry's state, flags seen and expiry (the fields a CT and a
 * NAT value share) for a packet of its direction. */
static __always_inline void lb_touch(__u8 *state, __u8 *flags_seen, __u64 *expires_ns,
				     const struct lb_pkt *p, __u64 now)
{
	__u8 st = lb_tcp_next(p->t.proto, *state, p->tcp_flags);

	if (st != *state)
		*state = st;
	*flags_seen |= p->tcp_flags;
	*expires_ns = now + lb_lifetime(p->t.proto, st);
}

static __always_inline void lb_ct_touch(struct lb_ct_val *v, const struct lb_pkt *p, __u64 now)
{
	lb_touch(&v->state, &v->tcp_flags_seen, &v->expires_ns, p, now);
}

static __always_inline void lb_nat_touch(struct lb_nat_val *v, const struct lb_pkt *p, __u64 now)
{
	lb_touch(&v->state, &v->tcp_flags_seen, &v->expires_ns, p, now);
}

/* Bob Jenkins' lookup3 (jhash) over the 10 words of a tuple. Every node
 * computes the same value for a flow, so with the same LUT every node picks
 * the same backend (what makes ECMP across nodes safe). */
#define LB_ROL32(v, s) (((v) << (s)) | ((v) >> (32 - (s))))
#define LB_JMIX(a, b, c)                                                       \
	do {                                                                   \
		a -= c; a ^= LB_ROL32(c, 4); c += b;                           \
		b -= a; b ^= LB_ROL32(a, 6); a += c;                           \
		c -= b; c ^= LB_ROL32(b, 8); b += a;                           \
		a -= c; a ^= LB_ROL32(c, 16); c += b;                          \
		b -= a; b ^= LB_ROL32(a, 19); a += c;                          \
		c -= b; c ^= LB_ROL32(b, 4); b += a;                           \
	} while (0)
#define LB_JFINAL(a, b, c)                                                     \
	do {                                                                   \
		c ^= b; c -= LB_ROL32(b, 14);                                  \
		a ^= c; a -= LB_ROL32(c, 11);                                  \
		b ^= a; b -= LB_ROL32(a, 25);                                  \
		c ^= b; c -= LB_ROL32(b, 16);                                  \
		a ^= c; a -= LB_ROL32(c, 4);                                   \
		b ^= a; b -= LB_ROL32(a, 14);                                  \
		c ^= b; c -= LB_ROL32(b, 24);                                  \
	} while (0)

static __always_inline __u32 lb_hash(const struct lb_tuple *t, __u32 seed)
{
	const __u32 *w = (const __u32 *)t;
	__u32 a, b, c;

	a = b = c = 0xdeadbeef + (10 << 2) + seed;
	a += w[0]; b += w[1]; c += w[2];
	LB_JMIX(a, b, c);
	a += w[3]; b += w[4]; c += w[5];
	LB_JMIX(a, b, c);
	a += w[6]; b += w[7]; c += w[8];
	LB_JMIX(a, b, c);
	/* proto (dir and pad are 0 in a service tuple) */
	a += w[9];
	LB_JFINAL(a, b, c);
	return c;
}
