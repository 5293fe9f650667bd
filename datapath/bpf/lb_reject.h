/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rejecting a flow the load balancer cannot serve (no backend, or its
 * backend is gone): the packet is turned into a TCP RST (RFC 9293 §3.10.7.1:
 * seq = the segment's ACK if it has one, else seq 0 with ACK = seq + segment
 * length) or an ICMP port unreachable (RFC 792 type 3 code 3 / RFC 4443
 * type 1 code 4, quoting the start of the packet) from the frontend to the
 * client, and sent back out of the receiving device.
 *
 * The reply is built in a per-CPU scratch buffer (too big for the stack),
 * then the packet is resized and overwritten. IP options and IPv6 extension
 * headers of the request are not carried over.
 */
#pragma once

#include "lb_rewrite.h"

#define LB_QUOTE_MAX 128 /* bytes of the offending packet quoted in ICMP */
#define LB_PSEUDO_OFF 256 /* where the pseudo-header is built in scratch */

static __always_inline __u16 lb_fold(__s64 s)
{
	__u32 sum = (__u32)s;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline void lb_ip4_hdr(struct lb_ip4 *ip, const struct lb_pkt *p, __u8 proto,
				       __u16 len)
{
	ip->vihl = 0x45;
	ip->tot_len = bpf_htons(len);
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = 64;
	ip->proto = proto;
	ip->saddr = ((const __u32 *)p->t.daddr)[3];
	ip->daddr = ((const __u32 *)p->t.saddr)[3];
	ip->csum = lb_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
}

static __always_inline void lb_ip6_hdr(struct lb_ip6 *ip, const struct lb_pkt *p, __u8 nh,
				       __u16 plen)
{
	ip->vtc_flow = bpf_htonl(0x60000000);
	ip->plen = bpf_htons(plen);
	ip->nexthdr = nh;
	ip->hop = 64;
	lb_addr_copy(ip->saddr, p->t.daddr);
	lb_addr_copy(ip->daddr, p->t.saddr);
}

/* Sum of the pseudo-header of the reply (addresses swapped). */
static __always_inline __s64 lb_pseudo_sum(__u8 *ph, const struct lb_pkt *p, __u8 proto,
					   __u32 len)
{
	__u32 *w = (__u32 *)ph;

	if (!p->v6) {
		w[0] = ((const __u32 *)p->t.daddr)[3];
		w[1] = ((const __u32 *)p->t.saddr)[3];
		w[2] = bpf_htonl(((__u32)proto << 16) | len);
		return bpf_csum_diff(NULL, 0, (__be32 *)ph, 12, 0);
	}
	lb_addr_copy(ph, p->t.daddr);
	lb_addr_copy(ph + 16, p->t.saddr);
	w[8] = bpf_htonl(len);
	w[9] = bpf_htonl(proto);
	return bpf_csum_diff(NULL, 0, (__be32 *)ph, 40, 0);
}

/* Replaces the packet with the reply and sends it back out of the
 * receiving device. Returns the tc verdict. */
static __always_inline int lb_reject(struct __sk_buff *skb, struct lb_pkt *p)
{
	__u32 zero = 0, l3len, len, i;
	struct lb_scratch *s = bpf_map_lookup_elem(&rackd_lb_scratch, &zero);
	struct lb_eth eth;
	__u8 *b;

	if (!s)
		return TC_ACT_SHOT;
	b = s->b;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return TC_ACT_SHOT;
#pragma clang loop unroll(full)
	for (i = 0; i < LB_SCRATCH / 8; i++)
		((__u64 *)b)[i] = 0;
	__builtin_memcpy(b, eth.src, 6);
	__builtin_memcpy(b + 6, eth.dst, 6);
	__builtin_memcpy(b + 12, &eth.proto, 2);
	l3len = p->v6 ? sizeof(struct lb_ip6) : sizeof(struct lb_ip4);

	if (p->t.proto == LB_IPPROTO_TCP) {
		struct lb_tcp in, *out = (struct lb_tcp *)(b + LB_L3 + l3len);
		__u32 seglen;

		if (bpf_skb_load_bytes(skb, p->l4_off, &in, sizeof(in)))
			return TC_ACT_SHOT;
		/* An RST is never answered (RFC 9293). */
		if (in.flags & LB_TCP_RST)
			return TC_ACT_SHOT;
		out->sport = in.dport;
		out->dport = in.sport;
		out->doff = 5 << 4;
		if (in.flags & LB_TCP_ACK) {
			out->seq = in.ack;
			out->flags = LB_TCP_RST;
		} else {
			seglen = p->end - p->l4_off - (in.doff >> 4) * 4;
			if (in.flags & LB_TCP_SYN)
				seglen++;
			if (in.flags & LB_TCP_FIN)
				seglen++;
			out->ack = bpf_htonl(bpf_ntohl(in.seq) + seglen);
			out->flags = LB_TCP_RST | LB_TCP_ACK;
		}
		__s64 sum = lb_pseudo_sum(b + LB_PSEUDO_OFF, p, LB_IPPROTO_TCP, sizeof(*out));

		out->csum = lb_fold(bpf_csum_diff(NULL, 0, (__be32 *)out, sizeof(*out), sum));
		len = LB_L3 + l3len + sizeof(*out);
		if (p->v6)
			lb_ip6_hdr((struct lb_ip6 *)(b + LB_L3), p, LB_IPPROTO_TCP, sizeof(*out));
		else
			lb_ip4_hdr((struct lb_ip4 *)(b + LB_L3), p, LB_IPPROTO_TCP,
				   l3len + sizeof(*out));
		lb_event(LB_EV_RST_SENT);
	} else {
		__u8 *icmp = b + LB_L3 + l3len;
		__u32 q = p->end - LB_L3;
		__u8 proto = p->v6 ? LB_IPPROTO_ICMPV6 : LB_IPPROTO_ICMP;
		__s64 sum = 0;

		if (q > LB_QUOTE_MAX)
			q = LB_QUOTE_MAX;
		if (q < 1)
			return TC_ACT_SHOT;
		if (bpf_skb_load_bytes(skb, LB_L3, icmp + 8, q))
			return TC_ACT_SHOT;
		icmp[0] = p->v6 ? LB_ICMP6_UNREACH : LB_ICMP_UNREACH;
		icmp[1] = p->v6 ? 4 : 3; /* port unreachable */
		if (p->v6)
			sum = lb_pseudo_sum(b + LB_PSEUDO_OFF, p, proto, 8 + q);
		/* The scratch is zeroed past the quote: summing the fixed
		 * maximum adds nothing. */
		*(__u16 *)(icmp + 2) =
			lb_fold(bpf_csum_diff(NULL, 0, (__be32 *)icmp, 8 + LB_QUOTE_MAX, sum));
		len = LB_L3 + l3len + 8 + q;
		if (p->v6)
			lb_ip6_hdr((struct lb_ip6 *)(b + LB_L3), p, proto, 8 + q);
		else
			lb_ip4_hdr((struct lb_ip4 *)(b + LB_L3), p, proto, l3len + 8 + q);
		lb_event(LB_EV_ICMP_SENT);
	}
	if (len > LB_L3 + 40 + 8 + LB_QUOTE_MAX)
		return TC_ACT_SHOT;
	if (bpf_skb_change_tail(skb, len, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, b, len, 0))
		return TC_ACT_SHOT;
	bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
	return bpf_redirect(skb->ifindex, 0);
}
