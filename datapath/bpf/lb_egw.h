/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress gateway (CiliumEgressGatewayPolicy) on the load balancer's two
 * programs, after Cilium's bpf/lib/egress_gateway.h: one LPM map keyed by
 * (source pod address /128, destination CIDR) says, for every selected pod
 * of the cluster, where its traffic to a policy's destinations leaves.
 *
 * Source node, rackd_lb_out: a matching packet (not an excluded CIDR, not
 * the reply of a connection that came in to the pod) is encapsulated to
 * the gateway node through rackd's collect-metadata VXLAN device
 * (bpf_skb_set_tunnel_key + bpf_redirect), as Cilium always encapsulates
 * egress-gateway traffic, even in native routing.
 * Gateway node: rackd_egw_tunnel, at the tunnel device's ingress, finds the
 * entry saying "this node is the gateway" (EGW_F_LOCAL): the NAT engine
 * (lb_snat) translates the source to the egress address and the FIB
 * forwards it (the kernel's input path would refuse it: the tunnel device
 * has no address, so any rp_filter drops it). Pods on the gateway itself
 * meet the same entry in rackd_lb_out, without the tunnel.
 * Replies at the gateway: rackd_lb_in's reverse NAT restores the pod's
 * address, then the entry found with the reversed tuple sends the packet
 * back through the tunnel to the pod's node (src_node), where
 * rackd_egw_tunnel forwards it to the pod; ICMP errors about the flow
 * likewise, found by their quote.
 *
 * Entries carry flags rather than Cilium's sentinel addresses (0.0.0.0 =
 * no gateway, 0.0.0.1 = excluded), since IPv6 and IPv4 share one map here.
 */
#pragma once

#include "lb_nat.h"

/* struct egw_entry.flags */
#define EGW_F_EXCLUDED 1   /* an excludedCIDR: ordinary masquerade applies */
#define EGW_F_NO_GATEWAY 2 /* no gateway node selected: drop (Cilium's DROP_NO_EGRESS_GATEWAY) */
#define EGW_F_LOCAL 4      /* this node is the policy's active gateway */

/* rackd_egw_stats_v3 slots */
#define EGW_ST_TUNNELLED 0   /* sent to the gateway node */
#define EGW_ST_SNAT 1        /* translated to the egress address here */
#define EGW_ST_REPLY_TUNNEL 2 /* a reply sent back to the pod's node */
#define EGW_ST_NO_GATEWAY 3  /* dropped: no gateway */
#define EGW_ST_NO_EGRESS_IP 4 /* dropped: gateway here, egress address unknown */
#define EGW_ST_UNSUPPORTED 5 /* dropped: fragment or protocol the NAT cannot translate */
#define EGW_ST_NAT_FAILED 6  /* dropped: the NAT engine failed (exhaustion, rewrite) */
#define EGW_ST_TUNNEL_FAILED 7 /* dropped: no tunnel device, or the helpers failed */
#define EGW_ST_SLOTS 8

struct egw_key {
	__u32 prefixlen; /* 128 (the source, exact) + destination prefix bits (IPv4-mapped) */
	LB_ADDR(saddr);
	LB_ADDR(daddr);
};

struct egw_entry {
	LB_ADDR(egress_ip); /* the address to SNAT to at the gateway; zero = unknown there */
	LB_ADDR(gateway);   /* the gateway node's tunnel endpoint */
	LB_ADDR(src_node);  /* the pod's node, for replies; zero when it is this node */
	__u32 flags;        /* EGW_F_* */
	__u32 pad;
};

struct egw_config {
	__u32 enabled;
	__u32 tunnel_ifindex; /* rackd's collect-metadata VXLAN device */
	__u32 vni;
	__u8 tunnel_mac[6];   /* the MAC every node gives that device (decap accepts it as ours) */
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct egw_key);
	__type(value, struct egw_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_egw_policy_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct egw_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_egw_config_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EGW_ST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_egw_stats_v3 SEC(".maps");

#define egw_count(slot) lb_count(&rackd_egw_stats_v3, (slot))

static __always_inline const struct egw_config *egw_cfg(void)
{
	__u32 zero = 0;
	const struct egw_config *c = bpf_map_lookup_elem(&rackd_egw_config_v3, &zero);

	return c && c->enabled ? c : NULL;
}

/* The entry for traffic from `src` to `dst`, or NULL. */
static __always_inline const struct egw_entry *egw_lookup(const __u8 *src, const __u8 *dst)
{
	struct egw_key k = {.prefixlen = 256};

	lb_addr_copy(k.saddr, src);
	lb_addr_copy(k.daddr, dst);
	return bpf_map_lookup_elem(&rackd_egw_policy_v3, &k);
}

static __always_inline int egw_drop(__u32 slot)
{
	egw_count(slot);
	return TC_ACT_SHOT;
}

/* Encapsulates the packet to `remote` through the tunnel device. The inner
 * frame's destination MAC becomes the tunnel device's, so the far end's
 * decapsulated frame is addressed to it (a frame for another host would be
 * dropped there). */
static __always_inline int egw_encap(struct __sk_buff *skb, const struct egw_config *c,
				     const __u8 *remote)
{
	struct bpf_tunnel_key key = {};
	__u8 mac[6];
	__u64 flags = 0;
	long r;

	if (!c->tunnel_ifindex || lb_addr_is_zero(remote))
		return egw_drop(EGW_ST_TUNNEL_FAILED);
	if (lb_addr_is_v4(remote)) {
		key.remote_ipv4 = bpf_ntohl(((const __u32 *)remote)[3]);
	} else {
		lb_addr_copy((__u8 *)key.remote_ipv6, remote);
		flags = BPF_F_TUNINFO_IPV6;
	}
	key.tunnel_id = c->vni;
	key.tunnel_ttl = 64;
	__builtin_memcpy(mac, c->tunnel_mac, 6);
	if (bpf_skb_store_bytes(skb, 0, mac, 6, 0))
		return egw_drop(EGW_ST_TUNNEL_FAILED);
	r = bpf_skb_set_tunnel_key(skb, &key, sizeof(key), flags);
	if (r)
		return egw_drop(EGW_ST_TUNNEL_FAILED);
	return bpf_redirect(c->tunnel_ifindex, 0);
}

/* The gateway's translation of a pod's packet to e's egress address: 0, or
 * the verdict of a counted drop (TC_ACT_SHOT). */
static __always_inline int egw_snat(struct __sk_buff *skb, struct lb_pkt *p,
				    const struct egw_entry *e, const struct lb_config *cfg, __u64 now)
{
	int err;

	if (lb_addr_is_zero(e->egress_ip))
		return egw_drop(EGW_ST_NO_EGRESS_IP);
	/* The NAT engine needs ports (or an echo identifier); fragments carry
	 * none after the first, and the gateway must not leak the pod's
	 * address, so both are dropped, counted (Cilium drops them too). */
	if (p->frag || !p->l4_ok || !p->sport_off)
		return egw_drop(EGW_ST_UNSUPPORTED);
	err = lb_snat(skb, p, e->egress_ip, 0, cfg, now);
	if (err) {
		lb_drop(err);
		return egw_drop(EGW_ST_NAT_FAILED);
	}
	egw_count(EGW_ST_SNAT);
	return 0;
}

/* rackd_lb_out: a pod's packet under a policy. -1 when no policy applies
 * (the caller goes on to masquerade). */
static __always_inline int egw_out(struct __sk_buff *skb, struct lb_pkt *p,
				   const struct lb_config *cfg, __u64 now)
{
	const struct egw_config *c = egw_cfg();
	const struct egw_entry *ep;
	struct egw_entry e;
	struct lb_tuple ik;
	int err;

	if (!c)
		return -1;
	ep = egw_lookup(p->t.saddr, p->t.daddr);
	if (!ep)
		return -1;
	e = *ep;
	if (e.flags & EGW_F_EXCLUDED)
		return -1;
	/* The reply of a connection from outside to the pod is not the pod's
	 * egress: it keeps its source, as masquerade does (lb_note_inbound). */
	if (!p->frag && p->l4_ok) {
		ik = p->t;
		ik.dir = LB_DIR_INBOUND;
		struct lb_ct_val *in = bpf_map_lookup_elem(&rackd_lb_ct_v3, &ik);

		if (in && in->expires_ns > now)
			return -1;
	}
	if (e.flags & EGW_F_NO_GATEWAY)
		return egw_drop(EGW_ST_NO_GATEWAY);
	if (!(e.flags & EGW_F_LOCAL)) {
		egw_count(EGW_ST_TUNNELLED);
		return egw_encap(skb, c, e.gateway);
	}
	err = egw_snat(skb, p, &e, cfg, now);
	return err ? err : TC_ACT_OK;
}

/* rackd_lb_in, after reverse NAT restored a pod's address: a reply (or an
 * ICMP error) of a remote pod's egress flow between `pod` and the remote
 * end `peer` goes back through the tunnel to the pod's node. -1 when it is
 * not one (the caller forwards it). */
static __always_inline int egw_reply(struct __sk_buff *skb, const __u8 *pod, const __u8 *peer)
{
	const struct egw_config *c = egw_cfg();
	const struct egw_entry *ep;

	if (!c)
		return -1;
	ep = egw_lookup(pod, peer);
	if (!ep || !(ep->flags & EGW_F_LOCAL) || (ep->flags & EGW_F_EXCLUDED) ||
	    lb_addr_is_zero(ep->src_node))
		return -1;
	egw_count(EGW_ST_REPLY_TUNNEL);
	return egw_encap(skb, c, ep->src_node);
}

/* rackd_egw_tunnel: a decapsulated packet. The gateway translates a remote
 * pod's packet to the egress address; either way the packet is forwarded by
 * the FIB (a reply at the pod's node goes to the pod's veth). */
static __always_inline int egw_tunnel_in(struct __sk_buff *skb, struct lb_pkt *p,
					 const struct lb_config *cfg, __u64 now)
{
	const struct egw_config *c = egw_cfg();
	const struct egw_entry *ep;
	struct egw_entry e;
	int err;

	if (!c)
		return TC_ACT_UNSPEC;
	ep = egw_lookup(p->t.saddr, p->t.daddr);
	if (ep && (ep->flags & EGW_F_LOCAL) && !(ep->flags & EGW_F_EXCLUDED)) {
		e = *ep;
		err = egw_snat(skb, p, &e, cfg, now);
		if (err)
			return err;
	}
	return lb_forward(skb, p);
}
