// SPDX-License-Identifier: Apache-2.0
/*
 * L2 responder: answers ARP requests (RFC 826) and IPv6 neighbour
 * solicitations (RFC 4861 §7.2.3) for (address, ifindex) entries announced by
 * the daemon, with the MAC of the receiving interface. Everything else is
 * passed on untouched.
 *
 * One parser/builder core, two attach points: `rackd_l2_tc` (tc/TCX ingress,
 * the one the loader attaches) and `rackd_l2_xdp` (kept for the tc-vs-XDP
 * measurement, see README.md). The reply is built on the stack and copied over
 * the request, so the request buffer becomes the reply.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "l2_responder.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct l2_v4_key);
	__type(value, struct l2_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_l2_v4_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct l2_v6_key);
	__type(value, struct l2_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_l2_v6_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct l2_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_l2_if_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, L2_CFG_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_l2_cfg_v1 SEC(".maps");

#define ETH_ALEN_ 6
#define ARPHRD_ETHER_ 1
#define ARPOP_REQUEST_ 1
#define ARPOP_REPLY_ 2
#define IPPROTO_ICMPV6_ 58
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_OPT_TARGET_LL_ADDR 2
#define NA_FLAG_SOLICITED 0x40
#define NA_FLAG_OVERRIDE 0x20

struct eth_hdr {
	__u8 dst[ETH_ALEN_];
	__u8 src[ETH_ALEN_];
	__be16 proto;
} __attribute__((packed));

/* ARP for IPv4 over Ethernet (RFC 826). */
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN_];
	__be32 spa;
	__u8 tha[ETH_ALEN_];
	__be32 tpa;
} __attribute__((packed));

struct ip6_hdr {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
} __attribute__((packed));

/* NS and NA share this layout (RFC 4861 §4.3, §4.4). */
struct nd_msg {
	__u8 type;
	__u8 code;
	__be16 csum;
	__u8 flags; /* NA: R|S|O in the top bits; NS: reserved */
	__u8 reserved[3];
	__u8 target[16];
} __attribute__((packed));

struct nd_opt_lla {
	__u8 type;
	__u8 len; /* in units of 8 bytes */
	__u8 addr[ETH_ALEN_];
} __attribute__((packed));

#define ARP_LEN (sizeof(struct eth_hdr) + sizeof(struct arp_eth))
#define NA_LEN                                                                 \
	(sizeof(struct eth_hdr) + sizeof(struct ip6_hdr) +                     \
	 sizeof(struct nd_msg) + sizeof(struct nd_opt_lla))
#define NA_ICMP_LEN (sizeof(struct nd_msg) + sizeof(struct nd_opt_lla))

struct arp_reply {
	struct eth_hdr eth;
	struct arp_eth arp;
} __attribute__((packed));

struct na_reply {
	struct eth_hdr eth;
	struct ip6_hdr ip6;
	struct nd_msg na;
	struct nd_opt_lla tlla;
} __attribute__((packed));

union reply {
	struct arp_reply arp;
	struct na_reply na;
	__u16 words[(NA_LEN + 1) / 2];
};

enum verdict {
	V_PASS = 0,
	V_ARP = 1, /* first ARP_LEN bytes of reply hold the answer */
	V_NA = 2,  /* first NA_LEN bytes of reply hold the answer */
};

/*
 * Liveness guard: answer only while the daemon's heartbeat is younger than
 * the lease duration, so a hung daemon stops claiming addresses that another
 * node may already have taken over. A missing stamp counts as stale.
 */
static __always_inline int daemon_alive(void)
{
	__u32 k_hb = L2_CFG_HEARTBEAT_NS, k_lease = L2_CFG_LEASE_NS;
	__u64 *hb = bpf_map_lookup_elem(&rackd_l2_cfg_v1, &k_hb);
	__u64 *lease = bpf_map_lookup_elem(&rackd_l2_cfg_v1, &k_lease);

	if (!hb || !lease || *hb == 0)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	/* Same clock (CLOCK_MONOTONIC) on both sides, so hb <= now; a stamp
	 * from the future can only be a just-written one. */
	if (now <= *hb)
		return 1;
	return now - *hb <= *lease;
}

static __always_inline int prepare_arp(void *data, void *data_end,
				       __u32 ifindex, union reply *r)
{
	struct eth_hdr *eth = data;
	struct arp_eth *arp = (void *)(eth + 1);

	if ((void *)(arp + 1) > data_end)
		return V_PASS;
	if (arp->htype != bpf_htons(ARPHRD_ETHER_) ||
	    arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN_ ||
	    arp->plen != 4 || arp->op != bpf_htons(ARPOP_REQUEST_))
		return V_PASS;
	/* A request whose sender and target address are equal is an
	 * announcement (RFC 5227 §2.3), not a question. */
	if (arp->spa == arp->tpa)
		return V_PASS;

	struct l2_v4_key key = { .ip4 = arp->tpa, .ifindex = ifindex };
	struct l2_entry *entry = bpf_map_lookup_elem(&rackd_l2_v4_v1, &key);
	if (!entry)
		return V_PASS;
	struct l2_iface *iface = bpf_map_lookup_elem(&rackd_l2_if_v1, &ifindex);
	if (!iface || !daemon_alive())
		return V_PASS;

	struct arp_reply *a = &r->arp;
	__builtin_memcpy(a->eth.dst, eth->src, ETH_ALEN_);
	__builtin_memcpy(a->eth.src, iface->mac, ETH_ALEN_);
	a->eth.proto = bpf_htons(ETH_P_ARP);
	a->arp.htype = bpf_htons(ARPHRD_ETHER_);
	a->arp.ptype = bpf_htons(ETH_P_IP);
	a->arp.hlen = ETH_ALEN_;
	a->arp.plen = 4;
	a->arp.op = bpf_htons(ARPOP_REPLY_);
	__builtin_memcpy(a->arp.sha, iface->mac, ETH_ALEN_);
	a->arp.spa = arp->tpa;
	__builtin_memcpy(a->arp.tha, arp->sha, ETH_ALEN_);
	a->arp.tpa = arp->spa;

	__sync_fetch_and_add(&entry->replies, 1);
	return V_ARP;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/*
 * ICMPv6 checksum (RFC 4443 §2.3) over the pseudo-header (RFC 8200 §8.1) and
 * the NA. The one's-complement sum is byte-order independent (RFC 1071), so
 * words are added as loaded and the constants in network order.
 */
static __always_inline void na_checksum(union reply *r)
{
	__u32 sum = 0;
	/* saddr + daddr: 32 bytes starting at byte 22 (word 11). */
#pragma unroll
	for (int i = 0; i < 16; i++)
		sum += r->words[11 + i];
	/* ICMP message: 32 bytes starting at byte 54 (word 27). */
#pragma unroll
	for (int i = 0; i < 16; i++)
		sum += r->words[27 + i];
	sum += bpf_htons(NA_ICMP_LEN) + bpf_htons(IPPROTO_ICMPV6_);
	r->na.na.csum = csum_fold(sum);
}

static __always_inline int prepare_na(void *data, void *data_end,
				      __u32 ifindex, union reply *r)
{
	struct eth_hdr *eth = data;
	struct ip6_hdr *ip6 = (void *)(eth + 1);
	struct nd_msg *ns = (void *)(ip6 + 1);

	if ((void *)(ns + 1) > data_end)
		return V_PASS;
	/* No extension headers: NDP messages carry none in practice, and
	 * RFC 4861 §7.1.1 validation starts from the ICMPv6 header. */
	if ((ip6->vtc_flow & bpf_htonl(0xf0000000)) != bpf_htonl(0x60000000) ||
	    ip6->nexthdr != IPPROTO_ICMPV6_ || ip6->hop_limit != 255 ||
	    bpf_ntohs(ip6->payload_len) < sizeof(struct nd_msg) ||
	    ns->type != ND_NEIGHBOR_SOLICIT || ns->code != 0)
		return V_PASS;

	struct l2_v6_key key = { .ifindex = ifindex, .pad = 0 };
	__builtin_memcpy(key.ip6, ns->target, 16);
	struct l2_entry *entry = bpf_map_lookup_elem(&rackd_l2_v6_v1, &key);
	if (!entry)
		return V_PASS;
	struct l2_iface *iface = bpf_map_lookup_elem(&rackd_l2_if_v1, &ifindex);
	if (!iface || !daemon_alive())
		return V_PASS;

	/* A solicitation from the unspecified address is duplicate address
	 * detection: answer all nodes, Solicited clear (RFC 4861 §7.2.4). */
	__u64 s_hi, s_lo;
	__builtin_memcpy(&s_hi, ip6->saddr, 8);
	__builtin_memcpy(&s_lo, ip6->saddr + 8, 8);
	int dad = (s_hi | s_lo) == 0;

	struct na_reply *n = &r->na;
	if (dad) {
		__u8 all_nodes_mac[ETH_ALEN_] = { 0x33, 0x33, 0, 0, 0, 1 };
		__u8 all_nodes[16] = { 0xff, 0x02, [15] = 1 };
		__builtin_memcpy(n->eth.dst, all_nodes_mac, ETH_ALEN_);
		__builtin_memcpy(n->ip6.daddr, all_nodes, 16);
		n->na.flags = NA_FLAG_OVERRIDE;
	} else {
		__builtin_memcpy(n->eth.dst, eth->src, ETH_ALEN_);
		__builtin_memcpy(n->ip6.daddr, ip6->saddr, 16);
		n->na.flags = NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
	}
	__builtin_memcpy(n->eth.src, iface->mac, ETH_ALEN_);
	n->eth.proto = bpf_htons(ETH_P_IPV6);
	n->ip6.vtc_flow = bpf_htonl(0x60000000);
	n->ip6.payload_len = bpf_htons(NA_ICMP_LEN);
	n->ip6.nexthdr = IPPROTO_ICMPV6_;
	n->ip6.hop_limit = 255;
	__builtin_memcpy(n->ip6.saddr, ns->target, 16);
	n->na.type = ND_NEIGHBOR_ADVERT;
	n->na.code = 0;
	n->na.csum = 0;
	n->na.reserved[0] = 0;
	n->na.reserved[1] = 0;
	n->na.reserved[2] = 0;
	__builtin_memcpy(n->na.target, ns->target, 16);
	n->tlla.type = ND_OPT_TARGET_LL_ADDR;
	n->tlla.len = 1;
	__builtin_memcpy(n->tlla.addr, iface->mac, ETH_ALEN_);
	na_checksum(r);

	__sync_fetch_and_add(&entry->replies, 1);
	return V_NA;
}

static __always_inline int prepare(void *data, void *data_end, __u32 ifindex,
				   union reply *r)
{
	struct eth_hdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return V_PASS;
	if (eth->proto == bpf_htons(ETH_P_ARP))
		return prepare_arp(data, data_end, ifindex, r);
	if (eth->proto == bpf_htons(ETH_P_IPV6))
		return prepare_na(data, data_end, ifindex, r);
	return V_PASS;
}

/*
 * The tc variant writes only through bpf_skb_store_bytes: a direct packet
 * write would make the verifier add a prologue that unclones every skb the
 * program sees (a copy per packet whenever a tap such as tcpdump holds a
 * clone), while we modify only the rare reply.
 */
SEC("classifier")
int rackd_l2_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 ifindex = skb->ifindex;
	union reply r = {};

	int v = prepare(data, data_end, ifindex, &r);
	if (v == V_ARP) {
		/* The request is at least as long as the reply; any Ethernet
		 * padding after it is kept. */
		if (bpf_skb_store_bytes(skb, 0, &r.arp, ARP_LEN, 0))
			return TC_ACT_UNSPEC;
		return bpf_redirect(ifindex, 0);
	}
	if (v == V_NA) {
		if (skb->len != NA_LEN && bpf_skb_change_tail(skb, NA_LEN, 0))
			return TC_ACT_UNSPEC;
		if (bpf_skb_store_bytes(skb, 0, &r.na, NA_LEN, 0))
			return TC_ACT_UNSPEC;
		/* Any CHECKSUM_COMPLETE value describes the request, not
		 * the reply. */
		bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
		return bpf_redirect(ifindex, 0);
	}
	/* TC_ACT_UNSPEC is TCX_NEXT: let the next program (or the stack)
	 * decide, as if we were not there. */
	return TC_ACT_UNSPEC;
}

SEC("xdp")
int rackd_l2_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	union reply r = {};

	int v = prepare(data, data_end, ifindex, &r);
	if (v == V_ARP) {
		if (data + ARP_LEN > data_end)
			return XDP_PASS;
		__builtin_memcpy(data, &r.arp, ARP_LEN);
		return XDP_TX;
	}
	if (v == V_NA) {
		int delta = (int)NA_LEN - (int)(data_end - data);
		if (delta && bpf_xdp_adjust_tail(ctx, delta))
			return XDP_PASS;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + NA_LEN > data_end)
			return XDP_PASS;
		__builtin_memcpy(data, &r.na, NA_LEN);
		return XDP_TX;
	}
	return XDP_PASS;
}
