#!/usr/bin/env python3
"""Extracts BGP messages from a pcap written by capture.sh (tcpdump -i any).

Prints one line per message in stream order per TCP flow:
`<sender>@<addr>-><receiver>@<addr> <type> <hex>`.
Only the standard library is used: pcap records, Linux cooked headers (SLL/SLL2), IPv4/IPv6,
TCP reassembly by sequence number (retransmissions dropped), then BGP framing by the header
length field.
"""
import ipaddress
import struct
import sys

NAMES = {"10.0.0.1": "frr", "fd00::1": "frr", "10.0.1.1": "frr", "fd00::2": "gobgp", "10.0.0.2": "gobgp",
         "10.0.1.3": "bird", "fd01::1": "frr", "fd01::3": "bird", "10.0.2.1": "frr", "10.0.2.3": "bird"}
TYPES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        pkt = data[off:off + incl]
        off += incl
        if linktype == 113:  # LINUX_SLL
            proto, l3 = struct.unpack(">H", pkt[14:16])[0], pkt[16:]
        elif linktype == 276:  # LINUX_SLL2
            proto, l3 = struct.unpack(">H", pkt[0:2])[0], pkt[20:]
        elif linktype == 1:
            proto, l3 = struct.unpack(">H", pkt[12:14])[0], pkt[14:]
        else:
            raise SystemExit(f"unsupported linktype {linktype}")
        yield proto, l3


def flows(path):
    out = {}
    order = []
    for proto, l3 in packets(path):
        if proto == 0x0800:
            ihl = (l3[0] & 0x0F) * 4
            total = struct.unpack(">H", l3[2:4])[0]
            if l3[9] != 6:
                continue
            src, dst = str(ipaddress.ip_address(l3[12:16])), str(ipaddress.ip_address(l3[16:20]))
            tcp = l3[ihl:total]
        elif proto == 0x86DD:
            if l3[6] != 6:
                continue
            plen = struct.unpack(">H", l3[4:6])[0]
            src, dst = str(ipaddress.ip_address(l3[8:24])), str(ipaddress.ip_address(l3[24:40]))
            tcp = l3[40:40 + plen]
        else:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:]
        key = (src, sport, dst, dport)
        if key not in out:
            out[key] = {}
            order.append(key)
        if payload:
            out[key].setdefault(seq, payload)
    for key in order:
        segs = sorted(out[key].items())
        stream = b""
        nxt = None
        for seq, p in segs:
            if nxt is not None and seq < nxt:
                p = p[nxt - seq:]
            stream += p
            nxt = seq + len(p) if nxt is None or seq >= nxt else nxt + len(p)
        yield key, stream


def main():
    for (src, _, dst, _), stream in flows(sys.argv[1]):
        i = 0
        while i + 19 <= len(stream):
            length = struct.unpack(">H", stream[i + 16:i + 18])[0]
            if length < 19 or i + length > len(stream):
                break
            msg = stream[i:i + length]
            print(f"{NAMES.get(src, src)}@{src}->{NAMES.get(dst, dst)}@{dst} {TYPES.get(msg[18], msg[18])} {msg.hex()}")
            i += length


if __name__ == "__main__":
    main()
