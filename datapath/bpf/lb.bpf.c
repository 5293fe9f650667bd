// SPDX-License-Identifier: Apache-2.0
/*
 * Service load balancer and masquerade: two tc programs on the node's
 * network-facing devices (see README.md, "The service load balancer").
 *
 * rackd_lb_in (tc ingress, TCX, before foreign programs, after the L2
 * responder):
 *   1. parse (malformed: passed untouched and counted);
 *   2. reverse NAT: a reply to a (device address, port) of a NAT mapping
 *      (service flow to a remote backend, masquerade, egress gateway) is
 *      translated back and forwarded (an egress-gateway reply for a remote
 *      pod: through the tunnel to its node, lb_egw.h);
 *   3. frontend (address, port, protocol) -> source ranges -> CT (an
 *      existing flow keeps its backend; a vanished backend resets the flow)
 *      -> affinity -> Maglev LUT -> DNAT; remote backend and not
 *      externalTrafficPolicy Local -> SNAT to the device address; forward.
 *      No backend: TCP RST / ICMP port unreachable back to the client.
 *      Fragments to a frontend address: dropped, counted.
 *   4. anything else: TCX_NEXT, untouched.
 * rackd_lb_out (tc egress):
 *   1. replies of DNATed flows to local backends: source back to the
 *      frontend;
 *   2. egress gateway (lb_egw.h): a selected pod's packet to a policy's
 *      destination is tunnelled to the gateway node, or SNATed to the
 *      egress address on the gateway itself;
 *   3. masquerade: source in a local pod CIDR, destination not in the
 *      non-masquerade CIDRs -> SNAT to the device address.
 *
 * Verdicts: TC_ACT_UNSPEC (= TCX_NEXT) for untouched packets; translated
 * packets are redirected (bpf_redirect_neigh) or handed to the stack with
 * TC_ACT_OK (TCX_PASS: later programs must not translate them again);
 * drops are TC_ACT_SHOT and counted by reason.
 */
#include "lb_common.h"
#include "lb_parse.h"
#include "lb_rewrite.h"
#include "lb_ct.h"
#include "lb_nat.h"
#include "lb_reject.h"
#include "lb_icmp.h"
#include "lb_egw.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int lb_dropped(__u32 reason)
{
	lb_drop(reason);
	return TC_ACT_SHOT;
}

static __always_inline const __u8 *lb_dev_addr(struct __sk_buff *skb, const struct lb_pkt *p)
{
	__u32 ifindex = skb->ifindex;
	struct lb_device *d = bpf_map_lookup_elem(&rackd_lb_devices_v3, &ifindex);
	const __u8 *a;

	if (!d)
		return NULL;
	a = p->v6 ? d->v6 : d->v4;
	return lb_addr_is_zero(a) ? NULL : a;
}

/* The chunk of generation `gen` of service `svc_id`'s table that holds byte
 * `*off`, with `*off` made the offset within it (kept opaque so that the
 * caller's bounds check reaches the verifier). NULL when absent. */
static __always_inline const struct lb_lut_chunk *lb_lut_byte(__u32 svc_id, __u32 gen,
							   __u32 *off)
{
	struct lb_lut_key lk = {
		.svc_id = svc_id,
		.chunk = (*off / LB_LUT_BYTES) | gen,
	};
	__u32 within = *off % LB_LUT_BYTES;

	LB_OPAQUE(within);
	*off = within;
	return bpf_map_lookup_elem(&rackd_lb_maglev_v3, &lk);
}

/* The backend for a new flow of service `svc`: affinity, else Maglev.
 * 0 when none. */
static __always_inline __u32 lb_select(const struct lb_pkt *p, const struct lb_svc *svc,
				       const struct lb_config *cfg, __u64 now)
{
	struct lb_affinity_key ak = {};
	const struct lb_lut_chunk *chunk;
	__u32 id = 0, slot, off, pos, m = cfg->maglev_m, n = svc->backend_count;
	__u32 gen = svc->flags & LB_SVC_LUT_ALT ? LB_LUT_ALT : 0;

	if (svc->flags & LB_SVC_AFFINITY) {
		struct lb_affinity_val *av;

		ak.svc_id = svc->svc_id;
		lb_addr_copy(ak.client, p->t.saddr);
		av = bpf_map_lookup_elem(&rackd_lb_affinity_v3, &ak);
		if (av && now - av->last_used_ns <= (__u64)svc->affinity_timeout_s * LB_NS &&
		    bpf_map_lookup_elem(&rackd_lb_backends_v3, &av->backend_id))
			return av->backend_id;
	}
	if (!m || m > LB_MAGLEV_MAX || !n || n > LB_LUT_MAX_BACKENDS)
		return 0;
	slot = lb_hash(&p->t, cfg->seed) % m;
	/* The slot's position: after the N ids, one or two bytes per slot.
	 * off < 4 * 65535 + 2 * 131071: no overflow. */
	off = n * 4 + (n > LB_LUT_NARROW_MAX ? slot * 2 : slot);
	chunk = lb_lut_byte(svc->svc_id, gen, &off);
	if (!chunk)
		return 0;
	if (n > LB_LUT_NARROW_MAX) {
		/* Even (4N + 2s, and LB_LUT_BYTES is even): never across chunks. */
		if (off > LB_LUT_BYTES - 2)
			return 0;
		pos = *(const __u16 *)&chunk->bytes[off];
	} else {
		if (off >= LB_LUT_BYTES)
			return 0;
		pos = chunk->bytes[off];
	}
	/* A table names only its own positions; checked, not trusted. */
	if (pos >= n)
		return 0;
	off = pos * 4;
	chunk = lb_lut_byte(svc->svc_id, gen, &off);
	if (!chunk)
		return 0;
	/* A multiple of 4, as LB_LUT_BYTES is: never across chunks. */
	if (off > LB_LUT_BYTES - 4)
		return 0;
	id = *(const __u32 *)&chunk->bytes[off];
	return id;
}

static __always_inline void lb_count_svc(struct __sk_buff *skb, __u32 svc_id)
{
	struct lb_svc_metrics *m = bpf_map_lookup_elem(&rackd_lb_metrics_v3, &svc_id);

	if (m) {
		m->packets += 1;
		m->bytes += skb->len;
	}
}

static __always_inline void lb_reply_key(struct lb_tuple *rk, const struct lb_pkt *p,
					 const struct lb_backend *be)
{
	lb_addr_copy(rk->saddr, be->addr);
	lb_addr_copy(rk->daddr, p->t.saddr);
	rk->sport = be->port;
	rk->dport = p->t.sport;
	rk->proto = p->t.proto;
	rk->dir = LB_DIR_REPLY;
}

/* A local flow's reply entry lives as long as its service entry: refreshed,
 * or recreated if the LRU evicted it, so replies never leak the backend's
 * address while the flow is tracked. */
static __always_inline void lb_keep_reply(const struct lb_pkt *p, const struct lb_backend *be,
					  const struct lb_ct_val *ct, __u64 now)
{
	struct lb_tuple rk = {};
	struct lb_ct_val *rv, nv = {};

	lb_reply_key(&rk, p, be);
	rv = bpf_map_lookup_elem(&rackd_lb_ct_v3, &rk);
	if (rv) {
		/* A closing flow ages out together, not at the longest. */
		if (rv->expires_ns < ct->expires_ns || ct->state == LB_CT_CLOSING)
			rv->expires_ns = ct->expires_ns;
		return;
	}
	nv.backend_id = ct->backend_id;
	nv.svc_id = ct->svc_id;
	nv.state = ct->state;
	nv.expires_ns = ct->expires_ns;
	bpf_map_update_elem(&rackd_lb_ct_v3, &rk, &nv, BPF_NOEXIST);
}

/* Step 3 of rackd_lb_in. -1: not a frontend; else the verdict. */
static __always_inline int lb_frontend(struct __sk_buff *skb, struct lb_pkt *p,
				       const struct lb_config *cfg, __u64 now)
{
	struct lb_svc_key sk = {};
	struct lb_svc *svcp, svc;
	struct lb_tuple ck;
	struct lb_ct_val *ct;
	struct lb_backend *bep, be;
	__u32 backend_id = 0;
	int new_flow = 1, err;

	lb_addr_copy(sk.addr, p->t.daddr);
	if (p->frag) {
		/* The address marker: some frontend lives here. */
		if (bpf_map_lookup_elem(&rackd_lb_services_v3, &sk))
			return lb_dropped(LB_DROP_FRAG);
		return -1;
	}
	if (p->t.proto != LB_IPPROTO_TCP && p->t.proto != LB_IPPROTO_UDP)
		return -1;
	if (!p->l4_ok) {
		/* Truncated: no port to look up. A frontend address gets a
		 * counted drop, anything else is left to the stack. */
		if (bpf_map_lookup_elem(&rackd_lb_services_v3, &sk))
			return lb_dropped(LB_DROP_MALFORMED);
		return -1;
	}
	sk.port = p->t.dport;
	sk.proto = p->t.proto;
	svcp = bpf_map_lookup_elem(&rackd_lb_services_v3, &sk);
	if (!svcp)
		return -1;
	svc = *svcp;
	lb_count_svc(skb, svc.svc_id);

	if (svc.flags & LB_SVC_SRC_RANGES) {
		struct lb_src_range_key rk = {.prefixlen = 32 + 128, .svc_id = svc.svc_id};

		lb_addr_copy(rk.addr, p->t.saddr);
		if (!bpf_map_lookup_elem(&rackd_lb_srcrange_v3, &rk))
			return lb_dropped(LB_DROP_SRC_RANGE);
	}

	ck = p->t;
	ck.dir = LB_DIR_SVC;
	ct = bpf_map_lookup_elem(&rackd_lb_ct_v3, &ck);
	if (ct && ct->expires_ns > now && ct->svc_id == svc.svc_id) {
		backend_id = ct->backend_id;
		bep = bpf_map_lookup_elem(&rackd_lb_backends_v3, &backend_id);
		if (!bep) {
			/* Its backend was removed: reset this flow only. */
			bpf_map_delete_elem(&rackd_lb_ct_v3, &ck);
			lb_drop(LB_DROP_BACKEND_GONE);
			return lb_reject(skb, p);
		}
		lb_ct_touch(ct, p, now);
		new_flow = 0;
		if (!(ct->flags & LB_CT_F_SNAT))
			lb_keep_reply(p, bep, ct, now);
	} else {
		if (!svc.backend_count) {
			lb_drop(LB_DROP_NO_BACKEND);
			return lb_reject(skb, p);
		}
		backend_id = lb_select(p, &svc, cfg, now);
		if (!backend_id)
			return lb_dropped(LB_DROP_LUT_MISS);
		bep = bpf_map_lookup_elem(&rackd_lb_backends_v3, &backend_id);
		if (!bep) {
			lb_drop(LB_DROP_NO_BACKEND);
			return lb_reject(skb, p);
		}
	}
	be = *bep;
	if (lb_addr_is_v4(be.addr) == p->v6)
		return lb_dropped(LB_DROP_FAMILY);

	if (new_flow) {
		struct lb_ct_val cv = {.backend_id = backend_id, .svc_id = svc.svc_id};

		if (!(be.flags & LB_BACKEND_LOCAL) && !(svc.flags & LB_SVC_LOCAL_ONLY))
			cv.flags = LB_CT_F_SNAT;
		lb_ct_touch(&cv, p, now);
		bpf_map_update_elem(&rackd_lb_ct_v3, &ck, &cv, BPF_ANY);
		if (!(cv.flags & LB_CT_F_SNAT)) {
			/* The reply (backend -> client) is translated at egress. */
			struct lb_tuple rk = {};

			lb_reply_key(&rk, p, &be);
			cv.flags = 0;
			cv.state = LB_CT_SYN;
			cv.tcp_flags_seen = 0;
			bpf_map_update_elem(&rackd_lb_ct_v3, &rk, &cv, BPF_ANY);
		}
		if (svc.flags & LB_SVC_AFFINITY) {
			struct lb_affinity_key ak = {.svc_id = svc.svc_id};
			struct lb_affinity_val av = {.backend_id = backend_id, .last_used_ns = now};

			lb_addr_copy(ak.client, p->t.saddr);
			bpf_map_update_elem(&rackd_lb_affinity_v3, &ak, &av, BPF_ANY);
		}
	} else if (svc.flags & LB_SVC_AFFINITY) {
		struct lb_affinity_key ak = {.svc_id = svc.svc_id};
		struct lb_affinity_val *av;

		lb_addr_copy(ak.client, p->t.saddr);
		av = bpf_map_lookup_elem(&rackd_lb_affinity_v3, &ak);
		if (av && av->backend_id == backend_id)
			av->last_used_ns = now;
	}

	if (lb_set_addr(skb, p, 1, be.addr) || lb_set_port(skb, p, 1, be.port))
		return lb_dropped(LB_DROP_REWRITE);
	if (!(be.flags & LB_BACKEND_LOCAL) && !(svc.flags & LB_SVC_LOCAL_ONLY)) {
		const __u8 *dev = lb_dev_addr(skb, p);

		if (!dev)
			return lb_dropped(LB_DROP_NO_ADDR);
		err = lb_snat(skb, p, dev, svc.svc_id, cfg, now);
		if (err)
			return lb_dropped(err);
	}
	return lb_forward(skb, p);
}

/* Remembers a connection from outside to a local pod (daddr in a pod
 * CIDR), so its replies are not masqueraded at egress. */
static __always_inline void lb_note_inbound(const struct lb_pkt *p, const struct lb_config *cfg,
					    __u64 now)
{
	struct lb_masq_key mk = {.prefixlen = 128};
	struct lb_tuple rk = {};
	struct lb_ct_val cv = {};

	if (!(p->v6 ? cfg->masq_v6 : cfg->masq_v4) || !p->l4_ok || p->frag ||
	    (p->t.proto != LB_IPPROTO_TCP && p->t.proto != LB_IPPROTO_UDP))
		return;
	lb_addr_copy(mk.addr, p->t.daddr);
	if (!bpf_map_lookup_elem(&rackd_lb_masqsrc_v3, &mk))
		return;
	lb_addr_copy(rk.saddr, p->t.daddr);
	lb_addr_copy(rk.daddr, p->t.saddr);
	rk.sport = p->t.dport;
	rk.dport = p->t.sport;
	rk.proto = p->t.proto;
	rk.dir = LB_DIR_INBOUND;
	struct lb_ct_val *old = bpf_map_lookup_elem(&rackd_lb_ct_v3, &rk);

	if (old) {
		lb_ct_touch(old, p, now);
		return;
	}
	lb_ct_touch(&cv, p, now);
	bpf_map_update_elem(&rackd_lb_ct_v3, &rk, &cv, BPF_ANY);
}

/* Steps 2-4 of rackd_lb_in. */
static __always_inline int lb_in(struct __sk_buff *skb, struct lb_pkt *p,
				 const struct lb_config *cfg, __u64 now)
{
	int r;

	if (!p->frag && p->l4_ok && (p->sport_off || p->dport_off)) {
		r = lb_snat_rev(skb, p, now);
		if (r == 0) {
			r = egw_reply(skb, p->t.daddr, p->t.saddr);
			return r >= 0 ? r : lb_forward(skb, p);
		}
		if (r > 0)
			return lb_dropped(r);
	}
	r = lb_frontend(skb, p, cfg, now);
	if (r >= 0)
		return r;
	lb_note_inbound(p, cfg, now);
	return TC_ACT_UNSPEC;
}

/* Step 1 of rackd_lb_out: a local backend's reply. -1 when p is none. */
static __always_inline int lb_reply_out(struct __sk_buff *skb, struct lb_pkt *p, __u64 now)
{
	struct lb_tuple rk = p->t;
	struct lb_ct_val *ct;
	struct lb_rev_nat *rn;
	__u32 svc_id;

	rk.dir = LB_DIR_REPLY;
	ct = bpf_map_lookup_elem(&rackd_lb_ct_v3, &rk);
	if (!ct || ct->expires_ns <= now)
		return -1;
	lb_ct_touch(ct, p, now);
	svc_id = ct->svc_id;
	rn = bpf_map_lookup_elem(&rackd_lb_revnat_v3, &svc_id);
	if (!rn)
		return -1;
	if (lb_set_addr(skb, p, 0, rn->addr) || lb_set_port(skb, p, 0, rn->port))
		return lb_dropped(LB_DROP_REWRITE);
	return TC_ACT_OK;
}

/* Step 3 of rackd_lb_out. -1 when p is not masqueraded. */
static __always_inline int lb_masquerade(struct __sk_buff *skb, struct lb_pkt *p,
					 const struct lb_config *cfg, __u64 now)
{
	struct lb_masq_key mk = {.prefixlen = 128};
	struct lb_tuple ik;
	const __u8 *dev;
	int err;

	if (!(p->v6 ? cfg->masq_v6 : cfg->masq_v4))
		return -1;
	lb_addr_copy(mk.addr, p->t.saddr);
	if (!bpf_map_lookup_elem(&rackd_lb_masqsrc_v3, &mk))
		return -1;
	lb_addr_copy(mk.addr, p->t.daddr);
	if (bpf_map_lookup_elem(&rackd_lb_nomasq_v3, &mk))
		return -1;
	/* A reply of a connection that came in from outside keeps its
	 * source (the client talks to the pod address). */
	ik = p->t;
	ik.dir = LB_DIR_INBOUND;
	struct lb_ct_val *in = bpf_map_lookup_elem(&rackd_lb_ct_v3, &ik);

	if (in && in->expires_ns > now) {
		lb_ct_touch(in, p, now);
		return -1;
	}
	if (p->frag)
		return lb_dropped(LB_DROP_FRAG);
	/* TCP, UDP, ICMP echo requests; other protocols leave unchanged. */
	if (!p->l4_ok || !p->sport_off)
		return -1;
	dev = lb_dev_addr(skb, p);
	if (!dev)
		return lb_dropped(LB_DROP_NO_ADDR);
	err = lb_snat(skb, p, dev, 0, cfg, now);
	if (err)
		return lb_dropped(err);
	return TC_ACT_OK;
}

/* Steps 1-3 of rackd_lb_out. */
static __always_inline int lb_out(struct __sk_buff *skb, struct lb_pkt *p,
				  const struct lb_config *cfg, __u64 now)
{
	int r;

	if (!p->frag && p->l4_ok) {
		r = lb_reply_out(skb, p, now);
		if (r >= 0)
			return r;
	}
	r = egw_out(skb, p, cfg, now);
	if (r >= 0)
		return r;
	r = lb_masquerade(skb, p, cfg, now);
	if (r >= 0)
		return r;
	return TC_ACT_UNSPEC;
}

/* Which program lb_run serves (a constant in each, so each keeps its path). */
#define LB_HOOK_OUT 0
#define LB_HOOK_IN 1
#define LB_HOOK_TUNNEL 2 /* the egress gateway's tunnel device, ingress (lb_egw.h) */

/* Every program: parse (malformed: counted, passed), config, ICMP errors
 * about our flows (translated and counted: forwarded at ingress, handed to
 * the stack at egress), then the hook's own steps. */
static __always_inline int lb_run(struct __sk_buff *skb, int hook)
{
	struct lb_pkt p = {};
	struct lb_config *cfg;
	__u64 now;
	int r;

	r = lb_parse(skb, &p);
	if (r == LB_P_MALFORMED)
		lb_event(LB_EV_MALFORMED_PASS);
	if (r != LB_P_OK)
		return TC_ACT_UNSPEC;
	cfg = lb_cfg();
	if (!cfg)
		return TC_ACT_UNSPEC;
	now = bpf_ktime_get_ns();

	if (p.icmp_err) {
		struct lb_inner in = {};

		/* At the tunnel device: a remote pod's error about a reply it
		 * got, translated as a packet leaving would be. */
		r = lb_icmp_err(skb, &p, now, hook == LB_HOOK_IN, &in);
		if (r > 0)
			return lb_dropped(r);
		if (r == 0)
			lb_event(LB_EV_ICMP_ERR);
		if (hook == LB_HOOK_TUNNEL)
			return lb_forward(skb, &p);
		if (r < 0)
			return TC_ACT_UNSPEC;
		if (hook == LB_HOOK_OUT)
			return TC_ACT_OK;
		/* About a remote pod's egress-gateway flow: back through the
		 * tunnel (the quote's destination is the remote end). */
		r = egw_reply(skb, p.t.daddr, in.t.daddr);
		return r >= 0 ? r : lb_forward(skb, &p);
	}
	if (hook == LB_HOOK_IN)
		return lb_in(skb, &p, cfg, now);
	if (hook == LB_HOOK_OUT)
		return lb_out(skb, &p, cfg, now);
	return egw_tunnel_in(skb, &p, cfg, now);
}

SEC("classifier")
int rackd_lb_in(struct __sk_buff *skb)
{
	return lb_run(skb, LB_HOOK_IN);
}

SEC("classifier")
int rackd_lb_out(struct __sk_buff *skb)
{
	return lb_run(skb, LB_HOOK_OUT);
}

/* tc ingress of rackd's tunnel device (lb_egw.h): decapsulated egress-gateway
 * traffic, forwarded here rather than by the kernel's input path, which would
 * drop it (the device has no address, so any rp_filter refuses it). */
SEC("classifier")
int rackd_egw_tunnel(struct __sk_buff *skb)
{
	return lb_run(skb, LB_HOOK_TUNNEL);
}
