/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parsing for lb.bpf.c. Everything is read with bpf_skb_load_bytes
 * into the stack, so no read can go out of bounds whatever the frame (and
 * non-linear skbs need no pull). Lengths are checked against the IP
 * header's own length and the skb's.
 */
#pragma once

#include "lb_common.h"

#define LB_L3 14 /* untagged Ethernet only; VLAN frames are passed */

#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

#define LB_ICMP_ECHOREPLY 0
#define LB_ICMP_UNREACH 3
#define LB_ICMP_ECHO 8
#define LB_ICMP_TIMXCEED 11
#define LB_ICMP6_UNREACH 1
#define LB_ICMP6_TOOBIG 2
#define LB_ICMP6_TIMXCEED 3
#define LB_ICMP6_ECHO 128
#define LB_ICMP6_ECHOREPLY 129

/* IPv6 extension headers walked before giving up (pass). */
#define LB_V6_EXT_MAX 6

/* Parse results. */
#define LB_P_OK 0
#define LB_P_PASS 1      /* not IP over untagged Ethernet: not ours */
#define LB_P_MALFORMED 2 /* IP, but unusable headers */

struct lb_eth {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
} __attribute__((packed));

struct lb_ip4 {
	__u8 vihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 proto;
	__be16 csum;
	__be32 saddr;
	__be32 daddr;
};

struct lb_ip6 {
	__be32 vtc_flow;
	__be16 plen;
	__u8 nexthdr;
	__u8 hop;
	LB_ADDR(saddr);
	LB_ADDR(daddr);
};

struct lb_tcp {
	__be16 sport;
	__be16 dport;
	__be32 seq;
	__be32 ack;
	__u8 doff;  /* data offset in the high nibble */
	__u8 flags;
	__be16 win;
	__be16 csum;
	__be16 urg;
};

/* A parsed packet. `t` is its tuple as seen on the wire (dir 0); for ICMP
 * echo the identifier is the source "port" of a request and the destination
 * "port" of a reply, the other one 0 (Cilium's convention). */
struct lb_pkt {
	struct lb_tuple t;
	__u32 l4_off;   /* offset of the L4 header */
	__u32 end;      /* offset just past the IP packet (its own length) */
	__u16 sport_off; /* offset of the rewritable source port/id, 0 = none */
	__u16 dport_off; /* same for the destination */
	__u16 csum_off;  /* offset of the L4 checksum, 0 = none */
	__u8 v6;
	__u8 frag;       /* a fragment (first or later) */
	__u8 l4_ok;      /* the L4 header is present */
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 pseudo;     /* the L4 checksum covers a pseudo-header */
	__u8 udp4;       /* UDP over IPv4 (checksum 0 = none) */
	__u8 ttl;
	__u8 icmp_err;   /* an ICMP(v6) error quoting a packet */
};

static __always_inline void lb_map_v4(__u8 *dst, __be32 a)
{
	__u32 *w = (__u32 *)dst;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = a;
}

/* The L4 header at p->l4_off, within p->end. */
static __always_inline void lb_parse_l4(struct __sk_buff *skb, struct lb_pkt *p)
{
	__u32 off = p->l4_off;

	if (p->t.proto == LB_IPPROTO_TCP) {
		struct lb_tcp th;

		if (off + sizeof(th) > p->end || bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
			return;
		if ((th.doff >> 4) < 5 || off + (th.doff >> 4) * 4 > p->end)
			return;
		p->t.sport = th.sport;
		p->t.dport = th.dport;
		p->tcp_flags = th.flags;
		p->sport_off = off;
		p->dport_off = off + 2;
		p->csum_off = off + 16;
		p->pseudo = 1;
		p->l4_ok = 1;
	} else if (p->t.proto == LB_IPPROTO_UDP) {
		__be16 h[4];

		if (off + sizeof(h) > p->end || bpf_skb_load_bytes(skb, off, h, sizeof(h)))
			return;
		p->t.sport = h[0];
		p->t.dport = h[1];
		p->sport_off = off;
		p->dport_off = off + 2;
		p->csum_off = off + 6;
		p->pseudo = 1;
		p->udp4 = !p->v6;
		p->l4_ok = 1;
	} else if (p->t.proto == (p->v6 ? LB_IPPROTO_ICMPV6 : LB_IPPROTO_ICMP)) {
		__u8 h[8];
		__u8 req = p->v6 ? LB_ICMP6_ECHO : LB_ICMP_ECHO;
		__u8 rep = p->v6 ? LB_ICMP6_ECHOREPLY : LB_ICMP_ECHOREPLY;

		if (off + sizeof(h) > p->end || bpf_skb_load_bytes(skb, off, h, sizeof(h)))
			return;
		p->icmp_type = h[0];
		p->icmp_code = h[1];
		p->csum_off = off + 2;
		p->pseudo = p->v6;
		p->l4_ok = 1;
		if (h[0] == req) {
			p->t.sport = *(__be16 *)&h[4];
			p->sport_off = off + 4;
		} else if (h[0] == rep) {
			p->t.dport = *(__be16 *)&h[4];
			p->dport_off = off + 4;
		} else if (p->v6 ? (h[0] == LB_ICMP6_UNREACH || h[0] == LB_ICMP6_TOOBIG ||
				    h[0] == LB_ICMP6_TIMXCEED)
				 : (h[0] == LB_ICMP_UNREACH || h[0] == LB_ICMP_TIMXCEED)) {
			p->icmp_err = 1;
		}
	}
}

static __always_inline int lb_parse4(struct __sk_buff *skb, struct lb_pkt *p)
{
	struct lb_ip4 ip;
	__u32 ihl, tot;

	if (bpf_skb_load_bytes(skb, LB_L3, &ip, sizeof(ip)))
		return LB_P_MALFORMED;
	ihl = (ip.vihl & 0xf) * 4;
	tot = bpf_ntohs(ip.tot_len);
	if ((ip.vihl >> 4) != 4 || ihl < sizeof(ip) || tot < ihl || tot > skb->len - LB_L3)
		return LB_P_MALFORMED;
	p->end = LB_L3 + tot;
	p->l4_off = LB_L3 + ihl;
	lb_map_v4(p->t.saddr, ip.saddr);
	lb_map_v4(p->t.daddr, ip.daddr);
	p->t.proto = ip.proto;
	p->ttl = ip.ttl;
	if (bpf_ntohs(ip.frag_off) & 0x3fff) {
		p->frag = 1;
		/* A later fragment has no L4 header. */
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return LB_P_OK;
	}
	lb_parse_l4(skb, p);
	return LB_P_OK;
}

static __always_inline int lb_parse6(struct __sk_buff *skb, struct lb_pkt *p)
{
	struct lb_ip6 ip;
	__u32 off = LB_L3 + sizeof(ip), plen;
	__u8 nh;
	int i, later_frag = 0;

	if (bpf_skb_load_bytes(skb, LB_L3, &ip, sizeof(ip)))
		return LB_P_MALFORMED;
	plen = bpf_ntohs(ip.plen);
	/* plen 0 is a jumbogram (hop-by-hop option): not handled. */
	if ((bpf_ntohl(ip.vtc_flow) >> 28) != 6 || plen == 0 ||
	    plen > skb->len - LB_L3 - sizeof(ip))
		return LB_P_MALFORMED;
	p->v6 = 1;
	p->end = off + plen;
	lb_addr_copy(p->t.saddr, ip.saddr);
	lb_addr_copy(p->t.daddr, ip.daddr);
	p->ttl = ip.hop;
	nh = ip.nexthdr;
#pragma clang loop unroll(full)
	for (i = 0; i < LB_V6_EXT_MAX; i++) {
		__u8 h[8];

		if (nh != 0 && nh != 43 && nh != 44 && nh != 51 && nh != 60)
			break;
		if (off + 8 > p->end || bpf_skb_load_bytes(skb, off, h, 8))
			return LB_P_MALFORMED;
		if (nh == 44) {
			__u16 fo = bpf_ntohs(*(__be16 *)&h[2]);

			p->frag = 1;
			if (fo & 0xfff8)
				later_frag = 1;
			off += 8;
		} else if (nh == 51) {
			off += ((__u32)h[1] + 2) * 4;
		} else {
			/* A routing header with segments left: the destination
			 * is not the final one; not ours to translate. */
			if (nh == 43 && h[3] != 0)
				return LB_P_PASS;
			off += ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	if (nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60 || off > p->end)
		return LB_P_MALFORMED; /* too many extension headers, or overrun */
	p->l4_off = off;
	p->t.proto = nh;
	if (!later_frag)
		lb_parse_l4(skb, p);
	return LB_P_OK;
}

/* Parses the frame in skb into p (zeroed by the caller). */
static __always_inline int lb_parse(struct __sk_buff *skb, struct lb_pkt *p)
{
	/* A VLAN tag (in the frame, or stripped into the skb) is passed. */
	if (skb->vlan_present)
		return LB_P_PASS;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return lb_parse4(skb, p);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return lb_parse6(skb, p);
	return LB_P_PASS;
}
