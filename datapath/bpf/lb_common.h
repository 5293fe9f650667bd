/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Service load balancer and masquerade (lb.bpf.c): map layouts shared with
 * Rust (datapath/src/lb/maps.rs mirrors every struct here, sizes asserted at
 * compile time), constants, and the map definitions.
 *
 * Every address in a map is 16 bytes: IPv6 as is, IPv4 as an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d), so one set of maps and one CT/NAT logic
 * serve both families. Ports are in network byte order.
 *
 * Any layout change bumps the `_v<N>` suffix of every map name and the
 * registry's version (see README.md, "Pin folders and versions"); maps
 * whose layout did not change are carried over from the older folder.
 */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Address fields are 4-byte aligned so they can be handled as words (the
 * verifier refuses misaligned stack accesses); no struct changes size. */
#define LB_ADDR(name) __u8 name[16] __attribute__((aligned(4)))

#define LB_IPPROTO_ICMP 1
#define LB_IPPROTO_TCP 6
#define LB_IPPROTO_UDP 17
#define LB_IPPROTO_ICMPV6 58

/* struct lb_svc.flags */
#define LB_SVC_LOCAL_ONLY 1 /* externalTrafficPolicy: Local */
#define LB_SVC_AFFINITY 2   /* sessionAffinity: ClientIP */
#define LB_SVC_SRC_RANGES 4 /* loadBalancerSourceRanges set */
#define LB_SVC_LUT_ALT 8    /* the table is in the LB_LUT_ALT chunks */

/* struct lb_backend.flags */
#define LB_BACKEND_LOCAL 1 /* on this node: no SNAT needed */

/* struct lb_tuple.dir */
#define LB_DIR_SVC 0     /* ct: client -> frontend, as received */
#define LB_DIR_REPLY 1   /* ct: local backend -> client, reply of a DNATed flow */
#define LB_DIR_INBOUND 2 /* ct: local pod -> remote, reply of a connection
			    that came in from outside (not masqueraded) */
#define LB_DIR_NAT_OUT 3 /* nat: original source -> destination */
#define LB_DIR_NAT_IN 4  /* nat: destination -> translated source */

/* struct lb_ct_val.state (TCP); other protocols stay LB_CT_OPEN. */
#define LB_CT_SYN 0
#define LB_CT_ESTABLISHED 1
#define LB_CT_CLOSING 2
#define LB_CT_OPEN 3

/* struct lb_ct_val.flags */
#define LB_CT_F_SNAT 1 /* remote backend, source translated by the NAT engine */

/* Lifetimes (Cilium's defaults). */
#define LB_NS 1000000000ULL
#define LB_LIFE_TCP_SYN (60 * LB_NS)
#define LB_LIFE_TCP_EST (21600 * LB_NS)
#define LB_LIFE_TCP_CLOSE (10 * LB_NS)
#define LB_LIFE_OTHER (60 * LB_NS)

/* Maglev LUT (layout version 3): a service's table is a byte stream,
 * its backend ids once (__u32 ids[N], N = the service's backend_count) then
 * per slot the position of its backend among them (__u8 below 256
 * backends, __u16 from 256 on), native byte order, cut into chunks of
 * LB_LUT_BYTES under key {svc_id, chunk}. Cilium stores M ids of four
 * bytes; positions make M = 16381 take 5 chunks instead of 17 for any
 * Service of fewer than 256 backends. 4000, not 4096: the kernel allocates
 * a hash element (header, key, value) from power-of-two caches, and 4000
 * bytes fit in 4 KiB.
 *
 * Two generations: a service whose flags have LB_SVC_LUT_ALT reads the
 * chunks whose index has LB_LUT_ALT set. Userspace writes a new table
 * under the generation not in use, then flips the flag with the service
 * entry (one map update), then deletes the old generation: a packet sees
 * either table whole, never a mix. */
#define LB_LUT_BYTES 4000

/* Hides a value's range from the compiler, so a bounds check it could
 * prove redundant (x % LB_LUT_BYTES < LB_LUT_BYTES) stays for the verifier,
 * which cannot. */
#define LB_OPAQUE(x) asm volatile("" : "+r"(x))
#define LB_LUT_NARROW_MAX 255
#define LB_LUT_MAX_BACKENDS 65535
#define LB_LUT_ALT 0x80000000u
#define LB_MAGLEV_MAX 131071

/* NAT port allocation: Cilium's bounded retries. */
#define LB_NAT_RETRIES 32

/* Slots of rackd_lb_drops_v3 (reasons a packet was dropped or rejected). */
#define LB_DROP_MALFORMED 0    /* addressed to a frontend, unusable headers */
#define LB_DROP_FRAG 1         /* fragment of a frontend flow or of masquerade */
#define LB_DROP_SRC_RANGE 2    /* client outside loadBalancerSourceRanges */
#define LB_DROP_NO_BACKEND 3   /* rejected: no backend (RST / ICMP sent) */
#define LB_DROP_NAT_EXHAUSTED 4 /* no free NAT port after the retries */
#define LB_DROP_LUT_MISS 5     /* LUT slot absent (table being rewritten) */
#define LB_DROP_BACKEND_GONE 6 /* tracked flow's backend removed (reset) */
#define LB_DROP_REWRITE 7      /* a helper failed while rewriting */
#define LB_DROP_NO_ADDR 8      /* SNAT needed, device has no address */
#define LB_DROP_FAMILY 9       /* backend of the other address family */
#define LB_DROP_SLOTS 10

/* Slots of rackd_lb_events_v3 (non-drop counters). */
#define LB_EV_NAT_RETRIES 0  /* collisions retried by the port allocator */
#define LB_EV_RST_SENT 1     /* TCP resets sent */
#define LB_EV_ICMP_SENT 2    /* ICMP(v6) unreachables sent */
#define LB_EV_MALFORMED_PASS 3 /* malformed packets passed to the stack */
#define LB_EV_REDIRECT 4     /* forwarded by fib lookup + redirect_neigh */
#define LB_EV_TO_STACK 5     /* translated, handed to the stack */
#define LB_EV_ICMP_ERR 6     /* ICMP errors translated */
#define LB_EV_SLOTS 8

/* rackd_lb_services_v3 key. A key with port 0 and proto 0 is the
 * address marker: some frontend uses this address (fragments to it are
 * dropped); userspace keeps it while any frontend has the address. */
struct lb_svc_key {
	LB_ADDR(addr);
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb_svc {
	__u32 svc_id;
	__u32 flags;
	__u32 affinity_timeout_s;
	__u32 backend_count;
};

struct lb_backend {
	LB_ADDR(addr);
	__be16 port;
	__u8 proto;
	__u8 flags;
};

struct lb_lut_key {
	__u32 svc_id;
	__u32 chunk;
};

struct lb_lut_chunk {
	__u8 bytes[LB_LUT_BYTES];
};

struct lb_rev_nat {
	LB_ADDR(addr);
	__be16 port;
	__u8 pad[2];
};

/* LPM: prefixlen = 32 (svc_id) + bits of addr (96 + plen for IPv4). */
struct lb_src_range_key {
	__u32 prefixlen;
	__u32 svc_id;
	LB_ADDR(addr);
};

struct lb_affinity_key {
	__u32 svc_id;
	LB_ADDR(client);
};

struct lb_affinity_val {
	__u32 backend_id;
	__u32 pad;
	__u64 last_used_ns;
};

/* Key of rackd_lb_ct_v3 and rackd_lb_nat_v3. */
struct lb_tuple {
	LB_ADDR(saddr);
	LB_ADDR(daddr);
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;
	__u8 pad[2];
};

struct lb_ct_val {
	__u64 expires_ns; /* CLOCK_MONOTONIC */
	__u32 backend_id;
	__u32 svc_id;
	__u8 tcp_flags_seen;
	__u8 state;
	__u8 flags;
	__u8 pad;
	__u32 pad2;
};

/* NAT_OUT: addr:port = translated source. NAT_IN: addr:port = original
 * source to restore as destination; svc_id != 0: a service flow, whose
 * source is restored to the frontend (rev_nat) too. */
struct lb_nat_val {
	__u64 expires_ns;
	LB_ADDR(addr);
	__be16 port;
	__u8 tcp_flags_seen;
	__u8 state;
	__u32 svc_id;
};

struct lb_config {
	__u32 maglev_m;  /* table size M; 0 = not configured */
	__u32 seed;      /* Maglev 5-tuple hash seed */
	__u16 nat_min;   /* NAT port range, host order */
	__u16 nat_max;
	__u8 masq_v4;
	__u8 masq_v6;
	__u8 pad[2];
};

/* A device's addresses for SNAT; all-zero = none. v4 is IPv4-mapped. */
struct lb_device {
	LB_ADDR(v4);
	LB_ADDR(v6);
};

struct lb_masq_key {
	__u32 prefixlen;
	LB_ADDR(addr);
};

struct lb_svc_metrics {
	__u64 packets;
	__u64 bytes;
};

/* Maps are written out in libbpf's form, not made by a macro: type, size, key, value, flags vary. */
/* Sizes overridable at load (datapath::lb::LbSizes); these are defaults. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_svc_key);
	__type(value, struct lb_svc);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_services_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_backends_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_lut_key);
	__type(value, struct lb_lut_chunk);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_maglev_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct lb_rev_nat);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_revnat_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct lb_src_range_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_srcrange_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_affinity_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_tuple);
	__type(value, struct lb_ct_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_ct_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_tuple);
	__type(value, struct lb_nat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_nat_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_config_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lb_device);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_devices_v3 SEC(".maps");

/* Sources to masquerade (local pod CIDRs). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct lb_masq_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_masqsrc_v3 SEC(".maps");

/* Destinations never masqueraded (ip-masq-agent's nonMasqueradeCIDRs). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct lb_masq_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_nomasq_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct lb_svc_metrics);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_metrics_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_drops_v3 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_EV_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_lb_events_v3 SEC(".maps");

/* Scratch space for building replies (too big for the 512-byte stack). */
#define LB_SCRATCH 320
struct lb_scratch {
	__u8 b[LB_SCRATCH];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_scratch);
} rackd_lb_scratch SEC(".maps");

static __always_inline void lb_count(void *map, __u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(map, &slot);

	if (c)
		*c += 1;
}

#define lb_drop(reason) lb_count(&rackd_lb_drops_v3, (reason))
#define lb_event(ev) lb_count(&rackd_lb_events_v3, (ev))

static __always_inline struct lb_config *lb_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&rackd_lb_config_v3, &zero);
}

static __always_inline int lb_addr_is_zero(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

static __always_inline int lb_addr_is_v4(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

static __always_inline void lb_addr_copy(__u8 *d, const __u8 *s)
{
	__u32 *dw = (__u32 *)d;
	const __u32 *sw = (const __u32 *)s;

	dw[0] = sw[0];
	dw[1] = sw[1];
	dw[2] = sw[2];
	dw[3] = sw[3];
}

static __always_inline int lb_addr_eq(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}
