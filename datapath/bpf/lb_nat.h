/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NAT engine (source NAT): service flows to remote backends and
 * masquerade share it; the egress gateway will call lb_snat with its own
 * source address.
 *
 * Two entries per flow in rackd_lb_nat_v3, as Cilium does: the reverse one
 * (reply tuple, LB_DIR_NAT_IN -> original source) inserted first with
 * BPF_NOEXIST, which is what reserves the port atomically across CPUs, then
 * the forward one (LB_DIR_NAT_OUT -> translated source); a failed forward
 * insert removes the reverse. Port allocation: keep the source port when
 * it is free, inside [nat_min, nat_max] or not (LB_NAT_KEEP_MIN), else a
 * random one of the range; on a collision one random jump into the range
 * then linear probing, LB_NAT_RETRIES attempts in all; exhaustion is a
 * counted drop.
 */
#pragma once

#include "lb_rewrite.h"
#include "lb_ct.h"

#define LB_NAT_MIN_DEFAULT 32768

/* A flow's own source port is kept when free even outside [nat_min, nat_max], if it is not
 * privileged (netfilter's MASQUERADE keeps any free port). The range is where a flow is moved
 * to when its port is taken. Why: a server remembers a closed connection in TIME_WAIT by its
 * 4-tuple, and the client's kernel derives the ISN and the TCP timestamp offset of a new
 * connection from its own 4-tuple. A flow kept on its own port meets only its own predecessor's
 * TIME_WAIT, whose sequence numbers and timestamps it follows, so the server accepts the SYN; a
 * flow moved to a port another flow used meets a stranger's TIME_WAIT, and about half the time
 * the server answers the SYN with the old connection's ACK (PAWS), the client resets it and
 * retries 8-12 ms later (TCP_TIMEOUT_MIN after an unacceptable ACK). Measured in bench/svc's
 * masquerade run (the pod's ports 1024-65535, the half below the range moved at random): 293 of
 * 555 SYNs on a port another flow had used got that ACK, none of 6,023 on their own port. */
#define LB_NAT_KEEP_MIN 1024

/* A closed TCP flow (FIN or RST seen) that has sent nothing for this long gives its port up
 * to a new flow, as the kernel's TIME_WAIT reuse does for its own sockets: with Cilium's 10 s
 * close timeout alone, 32,768 ports sustain only ~3,300 new connections/s to one destination
 * and allocations fail (measured: bench/svc masquerade). */
#define LB_NAT_REUSE_QUIET (1 * LB_NS)

/* Whether the NAT slot held by v may be taken over at `now`: expired, or closing and quiet
 * for LB_NAT_REUSE_QUIET (each packet of a closing flow sets its expiry to now + the close
 * lifetime). */
static __always_inline int lb_nat_reusable(const struct lb_nat_val *v, __u64 now)
{
	if (v->expires_ns <= now)
		return 1;
	return v->state == LB_CT_CLOSING &&
	       v->expires_ns + LB_NAT_REUSE_QUIET <= now + LB_LIFE_TCP_CLOSE;
}
#define LB_NAT_MAX_DEFAULT 65535

/* The reverse entry of the forward mapping fv of p: refreshed to live as
 * long as the forward one, or recreated if the LRU evicted it or GC removed
 * it (Cilium recreates a lost half too). -1 when its port was taken by
 * another flow meanwhile: the caller allocates afresh. */
static __always_inline int lb_nat_keep_rev(const struct lb_pkt *p, const struct lb_nat_val *fv,
					   __u64 now)
{
	struct lb_tuple rk = {};
	struct lb_nat_val *rv, nv = {};
	__u8 st = lb_tcp_next(p->t.proto, fv->state, p->tcp_flags);
	__u64 exp = now + lb_lifetime(p->t.proto, st);

	lb_addr_copy(rk.saddr, p->t.daddr);
	lb_addr_copy(rk.daddr, fv->addr);
	rk.sport = p->t.dport;
	rk.dport = fv->port;
	rk.proto = p->t.proto;
	rk.dir = LB_DIR_NAT_IN;
	rv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &rk);
	if (rv) {
		if (!lb_addr_eq(rv->addr, p->t.saddr) || rv->port != p->t.sport)
			return -1;
		/* A closing flow ages out together, not at the longest. */
		if (rv->expires_ns < exp || st == LB_CT_CLOSING)
			rv->expires_ns = exp;
		/* The port's holder knows its flow is closing (see lb_nat_reusable). */
		if (st == LB_CT_CLOSING)
			rv->state = st;
		return 0;
	}
	lb_addr_copy(nv.addr, p->t.saddr);
	nv.port = p->t.sport;
	nv.svc_id = fv->svc_id;
	nv.state = fv->state;
	nv.expires_ns = exp;
	return bpf_map_update_elem(&rackd_lb_nat_v3, &rk, &nv, BPF_NOEXIST) ? -1 : 0;
}

/* Translates p's source to `to` and a port of the range (ICMP echo: the
 * identifier), reusing the flow's mapping or creating one. `svc_id` != 0
 * marks a service flow (replies get their source restored from rev_nat).
 * Returns 0, or the drop reason. */
static __always_inline int lb_snat(struct __sk_buff *skb, struct lb_pkt *p, const __u8 *to,
				   __u32 svc_id, const struct lb_config *cfg, __u64 now)
{
	struct lb_tuple fk = p->t;
	struct lb_nat_val *fv;
	struct lb_nat_val nv = {};
	__u8 to_addr[16] __attribute__((aligned(4)));
	__be16 nport;

	lb_addr_copy(to_addr, to);
	fk.dir = LB_DIR_NAT_OUT;
	fv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &fk);
	if (fv && lb_addr_eq(fv->addr, to_addr) && fv->expires_ns > now &&
	    lb_nat_keep_rev(p, fv, now) == 0) {
		lb_nat_touch(fv, p, now);
		nport = fv->port;
	} else {
		struct lb_tuple rk = {};
		struct lb_nat_val rv = {};
		__u32 min = cfg->nat_min, max = cfg->nat_max, range, port;
		int i, ok = 0;

		if (!min || max < min) {
			min = LB_NAT_MIN_DEFAULT;
			max = LB_NAT_MAX_DEFAULT;
		}
		range = max - min + 1;
		lb_addr_copy(rk.saddr, p->t.daddr);
		lb_addr_copy(rk.daddr, to_addr);
		rk.sport = p->t.dport;
		rk.proto = p->t.proto;
		rk.dir = LB_DIR_NAT_IN;
		lb_addr_copy(rv.addr, p->t.saddr);
		rv.port = p->t.sport;
		rv.svc_id = svc_id;
		lb_nat_touch(&rv, p, now);
		port = bpf_ntohs(p->t.sport);
		if (port < LB_NAT_KEEP_MIN && (port < min || port > max))
			port = min + bpf_get_prandom_u32() % range;
		for (i = 0; i < LB_NAT_RETRIES; i++) {
			rk.dport = bpf_htons(port);
			if (!bpf_map_update_elem(&rackd_lb_nat_v3, &rk, &rv, BPF_NOEXIST)) {
				ok = 1;
				break;
			}
			/* The slot may be held by an expired flow, or by a closed one gone
			 * quiet: take it over. */
			struct lb_nat_val *old = bpf_map_lookup_elem(&rackd_lb_nat_v3, &rk);

			if (old && lb_nat_reusable(old, now) &&
			    !bpf_map_update_elem(&rackd_lb_nat_v3, &rk, &rv, BPF_EXIST)) {
				ok = 1;
				break;
			}
			lb_event(LB_EV_NAT_RETRIES);
			if (i == 0)
				port = min + bpf_get_prandom_u32() % range;
			else
				port = port >= max ? min : port + 1;
		}
		if (!ok)
			return LB_DROP_NAT_EXHAUSTED;
		nport = bpf_htons(port);
		lb_addr_copy(nv.addr, to_addr);
		nv.port = nport;
		nv.svc_id = svc_id;
		lb_nat_touch(&nv, p, now);
		if (bpf_map_update_elem(&rackd_lb_nat_v3, &fk, &nv, BPF_ANY)) {
			bpf_map_delete_elem(&rackd_lb_nat_v3, &rk);
			return LB_DROP_REWRITE;
		}
	}
	if (lb_set_addr(skb, p, 0, to_addr) || lb_set_port(skb, p, 0, nport))
		return LB_DROP_REWRITE;
	return 0;
}

/* Reverse translation of a reply addressed to a NAT mapping: destination
 * back to the original source, and for a service flow the source back to
 * the frontend. -1 when p matches no mapping; 0 when translated; else a
 * drop reason. */
static __always_inline int lb_snat_rev(struct __sk_buff *skb, struct lb_pkt *p, __u64 now)
{
	struct lb_tuple rk = p->t;
	struct lb_nat_val *rv;
	__u8 addr[16] __attribute__((aligned(4)));
	__be16 port;
	__u32 svc_id;

	rk.dir = LB_DIR_NAT_IN;
	rv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &rk);
	if (!rv || rv->expires_ns <= now)
		return -1;
	lb_nat_touch(rv, p, now);
	lb_addr_copy(addr, rv->addr);
	port = rv->port;
	svc_id = rv->svc_id;
	{
		/* Keep the forward half alive as long as replies flow. */
		struct lb_tuple fk = {};
		struct lb_nat_val *fv;

		lb_addr_copy(fk.saddr, addr);
		lb_addr_copy(fk.daddr, p->t.saddr);
		fk.sport = port;
		fk.dport = p->t.sport;
		fk.proto = p->t.proto;
		fk.dir = LB_DIR_NAT_OUT;
		fv = bpf_map_lookup_elem(&rackd_lb_nat_v3, &fk);
		if (fv && (fv->expires_ns < rv->expires_ns || rv->state == LB_CT_CLOSING))
			fv->expires_ns = rv->expires_ns;
	}
	if (svc_id) {
		struct lb_rev_nat *rn = bpf_map_lookup_elem(&rackd_lb_revnat_v3, &svc_id);

		if (rn && (lb_set_addr(skb, p, 0, rn->addr) || lb_set_port(skb, p, 0, rn->port)))
			return LB_DROP_REWRITE;
	}
	if (lb_set_addr(skb, p, 1, addr) || lb_set_port(skb, p, 1, port))
		return LB_DROP_REWRITE;
	return 0;
}
