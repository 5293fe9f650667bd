/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Header rewriting with incremental checksum updates, and forwarding.
 *
 * Writes go through bpf_skb_store_bytes and the csum helpers only (no
 * direct packet writes: those make the verifier unclone every skb). Address
 * changes update the L4 checksum with BPF_F_PSEUDO_HDR (they are in the
 * pseudo-header, which is all a CHECKSUM_PARTIAL skb's field holds); port
 * changes without it. UDP over IPv4 keeps a zero (absent) checksum.
 */
#pragma once

#include "lb_parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

static __always_inline __u64 lb_l4_flags(const struct lb_pkt *p)
{
	return p->udp4 ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrites the source (dst = 0) or destination (dst = 1) address of p's
 * packet to `to` (16 bytes, IPv4-mapped for IPv4). 0 on success. */
static __always_inline int lb_set_addr(struct __sk_buff *skb, struct lb_pkt *p, int dst,
				       const __u8 *to)
{
	__u8 *old = dst ? p->t.daddr : p->t.saddr;
	__u32 n[4];

	/* `to` may be a map value another CPU writes: take one copy. */
	lb_addr_copy((__u8 *)n, to);
	if (!p->v6) {
		__be32 o = ((__u32 *)old)[3];
		__u32 off = LB_L3 + (dst ? 16 : 12);

		if (bpf_skb_store_bytes(skb, off, &n[3], 4, 0))
			return -1;
		if (bpf_l3_csum_replace(skb, LB_L3 + 10, o, n[3], 4))
			return -1;
		if (p->csum_off && p->pseudo &&
		    bpf_l4_csum_replace(skb, p->csum_off, o, n[3],
					BPF_F_PSEUDO_HDR | lb_l4_flags(p) | 4))
			return -1;
	} else {
		__u32 off = LB_L3 + (dst ? 24 : 8);
		__s64 diff = bpf_csum_diff((__be32 *)old, 16, (__be32 *)n, 16, 0);

		if (bpf_skb_store_bytes(skb, off, n, 16, 0))
			return -1;
		if (p->csum_off && p->pseudo &&
		    bpf_l4_csum_replace(skb, p->csum_off, 0, diff, BPF_F_PSEUDO_HDR))
			return -1;
	}
	lb_addr_copy(old, (__u8 *)n);
	return 0;
}

/* Rewrites the source or destination port (ICMP echo: the identifier) of
 * p's packet. 0 on success; a packet without that port is left alone. */
static __always_inline int lb_set_port(struct __sk_buff *skb, struct lb_pkt *p, int dst,
				       __be16 to)
{
	__u16 off = dst ? p->dport_off : p->sport_off;
	__be16 *old = dst ? &p->t.dport : &p->t.sport;

	if (!off || *old == to)
		return 0;
	if (bpf_skb_store_bytes(skb, off, &to, 2, 0))
		return -1;
	if (p->csum_off && bpf_l4_csum_replace(skb, p->csum_off, *old, to, lb_l4_flags(p) | 2))
		return -1;
	*old = to;
	return 0;
}

/* Forwards a translated ingress packet: FIB lookup from the receiving
 * device, TTL/hop limit decremented (the stack's forwarding is skipped),
 * bpf_redirect_neigh to the next hop (which resolves the neighbour and
 * writes the MACs). Anything the FIB does not resolve (local destination,
 * no route, needs fragmenting, TTL expiring) goes to the stack. */
static __always_inline int lb_forward(struct __sk_buff *skb, struct lb_pkt *p)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	long rc;

	if (p->ttl <= 1)
		goto stack;
	fib.ifindex = skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
	fib.l4_protocol = p->t.proto;
	fib.sport = p->t.sport;
	fib.dport = p->t.dport;
	fib.tot_len = p->end - LB_L3;
	if (!p->v6) {
		fib.family = AF_INET;
		fib.ipv4_src = ((__u32 *)p->t.saddr)[3];
		fib.ipv4_dst = ((__u32 *)p->t.daddr)[3];
	} else {
		fib.family = AF_INET6;
		lb_addr_copy((__u8 *)fib.ipv6_src, p->t.saddr);
		lb_addr_copy((__u8 *)fib.ipv6_dst, p->t.daddr);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		goto stack;
	if (!p->v6) {
		/* TTL and protocol share a checksummed 16-bit word. */
		__be16 o = bpf_htons(((__u16)p->ttl << 8) | p->t.proto);
		__be16 n = bpf_htons(((__u16)(p->ttl - 1) << 8) | p->t.proto);
		__u8 ttl = p->ttl - 1;

		if (bpf_skb_store_bytes(skb, LB_L3 + 8, &ttl, 1, 0) ||
		    bpf_l3_csum_replace(skb, LB_L3 + 10, o, n, 2))
			goto stack;
	} else {
		__u8 hop = p->ttl - 1;

		if (bpf_skb_store_bytes(skb, LB_L3 + 7, &hop, 1, 0))
			goto stack;
	}
	/* A v4 route may have a v6 next hop (RFC 5549): fib.family says. */
	if (fib.family == AF_INET) {
		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib.ipv4_dst;
	} else {
		nh.nh_family = AF_INET6;
		lb_addr_copy((__u8 *)nh.ipv6_nh, (__u8 *)fib.ipv6_dst);
	}
	lb_event(LB_EV_REDIRECT);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
stack:
	lb_event(LB_EV_TO_STACK);
	return TC_ACT_OK;
}
