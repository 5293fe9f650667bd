// SPDX-License-Identifier: Apache-2.0
/*
 * Probe: counts the packets it sees by EtherType and hands every one on
 * untouched (TC_ACT_UNSPEC = TCX_NEXT). rackd never attaches it: the tests
 * use it as a second program of ours, to prove the TCX ordering between our
 * programs, adoption and uninstall in the kernel, and that traffic still
 * flows through every program of the chain.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Slots of rackd_probe_v1 (datapath/src/maps.rs mirrors them). */
#define PROBE_ARP 0
#define PROBE_IPV4 1
#define PROBE_IPV6 2
#define PROBE_OTHER 3
#define PROBE_SLOTS 4

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROBE_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rackd_probe_v1 SEC(".maps");

SEC("classifier")
int rackd_probe_tc(struct __sk_buff *skb)
{
	__u32 slot;

	switch (skb->protocol) {
	case bpf_htons(ETH_P_ARP):
		slot = PROBE_ARP;
		break;
	case bpf_htons(ETH_P_IP):
		slot = PROBE_IPV4;
		break;
	case bpf_htons(ETH_P_IPV6):
		slot = PROBE_IPV6;
		break;
	default:
		slot = PROBE_OTHER;
	}
	__u64 *count = bpf_map_lookup_elem(&rackd_probe_v1, &slot);
	if (count)
		__sync_fetch_and_add(count, 1);
	return TC_ACT_UNSPEC;
}
