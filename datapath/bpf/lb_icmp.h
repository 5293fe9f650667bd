/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ICMP(v6) errors (unreachable, fragmentation needed / packet too big, time
 * exceeded) about tracked flows, translated in both directions: the outer
 * address and the quoted (inner) packet's addresses and ports, so the
 * original sender recognises its own packet (path MTU discovery works
 * through the translation).
 *
 * Checksums: the inner IPv4 header checksum is updated with each inner
 * address, which leaves the ICMP checksum unchanged for it; inner IPv6
 * addresses and inner ports change the ICMP checksum directly. The inner L4
 * checksum is left alone (the quote is often truncated; receivers do not
 * verify it), as Cilium does.
 *
 * Ingress: errors to a NAT mapping (the quoted packet is one we sent with
 * a translated source) and errors to a frontend about a reply of a service
 * flow. Egress: errors from a local backend about a DNATed packet, and from
 * a masqueraded pod about a reply it got.
 */
#pragma once

#include "lb_nat.h"

struct lb_inner {
	struct lb_tuple t; /* the quoted packet's tuple */
	__u32 l3;
	__u16 sport_off;
	__u16 dport_off;
};

/* The quoted packet of the ICMP error p. 0 when usable. */
static __always_inline int lb_inner_parse(struct __sk_buff *skb, const struct lb_pkt *p,
					  struct lb_inner *in)
{
	__u32 l4;
	__u8 h[8];

	in->l3 = p->l4_off + 8;
	if (!p->v6) {
		struct lb_ip4 ip;
		__u32 ihl;

		if (bpf_skb_load_bytes(skb, in->l3, &ip, sizeof(ip)))
			return -1;
		ihl = (ip.vihl & 0xf) * 4;
		if ((ip.vihl >> 4) != 4 || ihl < sizeof(ip) || (bpf_ntohs(ip.frag_off) & 0x1fff))
			return -1;
		lb_map_v4(in->t.saddr, ip.saddr);
		lb_map_v4(in->t.daddr, ip.daddr);
		in->t.proto = ip.proto;
		l4 = in->l3 + ihl;
	} else {
		struct lb_ip6 ip;

		if (bpf_skb_load_bytes(skb, in->l3, &ip, sizeof(ip)))
			return -1;
		if ((bpf_ntohl(ip.vtc_flow) >> 28) != 6)
			return -1;
		lb_addr_copy(in->t.saddr, ip.saddr);
		lb_addr_copy(in->t.daddr, ip.daddr);
		in->t.proto = ip.nexthdr;
		l4 = in->l3 + sizeof(ip);
	}
	if (l4 + 8 > p->end || bpf_skb_load_bytes(skb, l4, h, 8))
		return -1;
	if (in->t.proto == LB_IPPROTO_TCP || in->t.proto == LB_IPPROTO_UDP) {
		in->t.sport = *(__be16 *)&h[0];
		in->t.dport = *(__be16 *)&h[2];
		in->sport_off = l4;
		in->dport_off = l4 + 2;
		return 0;
	}
	if (in->t.proto == (p->v6 ? LB_IPPROTO_ICMPV6 : LB_IPPROTO_ICMP)) {
		if (h[0] == (p->v6 ? LB_ICMP6_ECHO : LB_ICMP_ECHO)) {
			in->t.sport = *(__be16 *)&h[4];
			in->sport_off = l4 + 4;
			return 0;
		}
		if (h[0] == (p->v6 ? LB_ICMP6_ECHOREPLY : LB_ICMP_ECHOREPLY)) {
			in->t.dport = *(__be16 *)&h[4];
			in->dport_off = l4 + 4;
			return 0;
		}
	}
	return -1;
}

/* The tuple of the flow's other direction, with `dir`. */
static __always_inline void lb_inner_reversed(const struct lb_inner *in, struct lb_tuple *k,
					      __u8 dir)
{
	lb_addr_copy(k->saddr, in->t.daddr);
	lb_addr_copy(k->daddr, in->t.saddr);
	k->sport = in->t.dport;
	k->dport = in->t.sport;
	k->proto = in->t.proto;
	k->dir = dir;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

static __always_inline int lb_inner_set_addr(struct __sk_buff *skb, const struct lb_pkt *p,
					     struct lb_inner *in, int dst, const __u8 *to)
{
	__u8 *old = dst ? in->t.daddr : in->t.saddr;
	__u32 n[4];

	lb_addr_copy((__u8 *)n, to);
	if (!p->v6) {
		__be32 o = ((__u32 *)old)[3];

		if (bpf_skb_store_bytes(skb, in->l3 + (dst ? 16 : 12), &n[3], 4, 0) ||
		    bpf_l3_csum_replace(skb, in->l3 + 10, o, n[3], 4))
			return -1;
	} else {
		__s64 diff = bpf_csum_diff((__be32 *)old, 16, (__be32 *)n, 16, 0);

		if (bpf_skb_store_bytes(skb, in->l3 + (dst ? 24 : 8), n, 16, 0) ||
		    bpf_l4_csum_replace(skb, p->csum_off, 0, diff, 0))
			return -1;
	}
	lb_addr_copy(old, (__u8 *)n);
	return 0;
}

static __always_inline int lb_inner_set_port(struct __sk_buff *skb, const struct lb_pkt *p,
					     struct lb_inner *in, int dst, __be16 to)
{
	__u16 off = dst ? in->dport_off : in->sport_off;
	__be16 *old = dst ? &in->t.dport : &in->t.sport;

	if (!off || *old == to)
		return 0;
	if (bpf_skb_store_bytes(skb, off, &to, 2, 0) ||
	    bpf_l4_csum_replace(skb, p->csum_off, *old, to, 2))
		return -1;
	*old = to;
	return 0;
}

/* Rewrites the outer address on side `dst` and the quoted packet's other
 * side (the quote went the opposite way) to `to`:port, from one copy of `to`
 * (it may be a map value). 0, or LB_DROP_REWRITE. */
static __always_inline int lb_icmp_rewrite(struct __sk_buff *skb, struct lb_pkt *p,
					   struct lb_inner *in, int dst, const __u8 *to, __be16 port)
{
	__u8 addr[16] __attribute__((aligned(4)));

	lb_addr_copy(addr, to);
	if (lb_set_addr(skb, p, dst, addr) || lb_inner_set_addr(skb, p, in, !dst, addr) ||
	    lb_inner_set_port(skb, p, in, !dst, port))
		return LB_DROP_REWRITE;
	return 0;
}

/* Ingress, for the parsed quote `in`. */
static __always_inline int lb_icmp_err_in(struct __sk_buff *skb, struct lb_pkt *p,
					  struct lb_inner *in, __u64 now)
{
	struct lb_tuple k = {};
	__u8 addr[16] __attribute__((aligned(4)));
	__be16 port;

	/* A packet we sent with a translated source. */
	lb_inner_reversed(in, &k, LB_DIR_NAT_IN);
	struct lb_nat_val *rv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &k);

	if (rv && rv->expires_ns > now) {
		__u32 svc_id = rv->svc_id;

		if (lb_icmp_rewrite(skb, p, in, 1, rv->addr, rv->port))
			return LB_DROP_REWRITE;
		if (svc_id) {
			struct lb_rev_nat *rn = bpf_map_lookup_elem(&rackd_lb_revnat_v3, &svc_id);

			if (rn && (lb_inner_set_addr(skb, p, in, 1, rn->addr) ||
				   lb_inner_set_port(skb, p, in, 1, rn->port)))
				return LB_DROP_REWRITE;
		}
		return 0;
	}

	/* A reply from a frontend (a backend's, translated at egress). */
	lb_inner_reversed(in, &k, LB_DIR_SVC);
	struct lb_ct_val *ct = bpf_map_lookup_elem(&rackd_lb_ct_v3, &k);

	if (!ct || ct->expires_ns <= now)
		return -1;
	__u32 backend_id = ct->backend_id;
	__u8 snat = ct->flags & LB_CT_F_SNAT;
	struct lb_backend *be = bpf_map_lookup_elem(&rackd_lb_backends_v3, &backend_id);

	if (!be)
		return -1;
	lb_addr_copy(addr, be->addr);
	port = be->port;
	if (lb_inner_set_addr(skb, p, in, 0, addr) || lb_inner_set_port(skb, p, in, 0, port))
		return LB_DROP_REWRITE;
	if (snat) {
		/* The backend saw the flow from the device address. */
		struct lb_tuple fk = k;
		struct lb_nat_val *fv;

		lb_addr_copy(fk.daddr, addr);
		fk.dport = port;
		fk.dir = LB_DIR_NAT_OUT;
		fv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &fk);
		if (!fv)
			return -1;
		lb_addr_copy(addr, fv->addr);
		port = fv->port;
		if (lb_inner_set_addr(skb, p, in, 1, addr) ||
		    lb_inner_set_port(skb, p, in, 1, port))
			return LB_DROP_REWRITE;
		lb_addr_copy(addr, in->t.saddr);
	}
	if (lb_set_addr(skb, p, 1, addr))
		return LB_DROP_REWRITE;
	return 0;
}

/* Egress, for the parsed quote `in`. */
static __always_inline int lb_icmp_err_out(struct __sk_buff *skb, struct lb_pkt *p,
					   struct lb_inner *in, __u64 now)
{
	struct lb_tuple k = {};

	/* A local backend about a packet of a DNATed flow. */
	lb_inner_reversed(in, &k, LB_DIR_REPLY);
	struct lb_ct_val *ct = bpf_map_lookup_elem(&rackd_lb_ct_v3, &k);

	if (ct && ct->expires_ns > now) {
		__u32 svc_id = ct->svc_id;
		struct lb_rev_nat *rn = bpf_map_lookup_elem(&rackd_lb_revnat_v3, &svc_id);

		if (!rn)
			return -1;
		return lb_icmp_rewrite(skb, p, in, 0, rn->addr, rn->port);
	}

	/* A masqueraded pod about a reply it received. */
	lb_inner_reversed(in, &k, LB_DIR_NAT_OUT);
	struct lb_nat_val *fv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &k);

	if (!fv || fv->expires_ns <= now)
		return -1;
	return lb_icmp_rewrite(skb, p, in, 0, fv->addr, fv->port);
}

/* The ICMP error p, at ingress or egress, its quote parsed into `in` (zeroed
 * by the caller). -1: not about a flow of ours; 0: translated; else the drop
 * reason. */
static __always_inline int lb_icmp_err(struct __sk_buff *skb, struct lb_pkt *p, __u64 now,
				       int ingress, struct lb_inner *in)
{
	if (p->frag || lb_inner_parse(skb, p, in))
		return -1;
	return ingress ? lb_icmp_err_in(skb, p, in, now) : lb_icmp_err_out(skb, p, in, now);
}
