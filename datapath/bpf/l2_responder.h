/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map layouts shared by the responder programs and the Rust loader
 * (datapath/src/maps.rs mirrors these structs byte for byte; its tests
 * assert the sizes). Changing a layout means bumping the _vN suffix of every
 * map name together with the responder's version in src/registry.rs (its pin
 * folder), because aya 0.14 silently reuses a pinned map of the same name.
 */
#ifndef RACKD_L2_RESPONDER_H
#define RACKD_L2_RESPONDER_H

#include <linux/types.h>

/* Key of rackd_l2_v4_v1: an announced IPv4 address on one interface. */
struct l2_v4_key {
	__u32 ip4;     /* network byte order */
	__u32 ifindex; /* interface the request must arrive on */
};

/* Key of rackd_l2_v6_v1: an announced IPv6 address on one interface. */
struct l2_v6_key {
	__u8 ip6[16];
	__u32 ifindex;
	__u32 pad; /* always zero: hash keys compare every byte */
};

/* Value of both entry maps. */
struct l2_entry {
	__u64 replies; /* ARP replies / neighbour advertisements sent */
};

/* Value of rackd_l2_if_v1 (key: __u32 ifindex): the MAC we answer with. */
struct l2_iface {
	__u8 mac[6];
	__u8 pad[2];
};

/* Slots of rackd_l2_cfg_v1 (ARRAY of __u64). */
#define L2_CFG_HEARTBEAT_NS 0 /* CLOCK_MONOTONIC stamp of the daemon's last heartbeat */
#define L2_CFG_LEASE_NS 1     /* answers stop when the stamp is older than this */
#define L2_CFG_SLOTS 2

#endif
