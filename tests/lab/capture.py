#!/usr/bin/env python3
"""Captures the UDP payloads to and from one port on some interfaces (an
AF_PACKET socket per interface; run it inside the namespace), for a
number of seconds or until SIGTERM, and writes them to a file, each
preceded by its length (4 bytes, big-endian).

    capture.py OUT PORT SECONDS IFACE...
"""
import select
import signal
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800


def main():
    out, port, seconds, ifaces = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
    socks = []
    for name in ifaces:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        s.bind((name, 0))
        socks.append(s)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    deadline = time.monotonic() + seconds
    with open(out, "wb") as f:
        while not stop[0] and time.monotonic() < deadline:
            try:
                ready, _, _ = select.select(socks, [], [], 0.2)
            except OSError:
                break
            for s in ready:
                try:
                    frame = s.recv(70000)
                except OSError:  # the laboratory is being taken down
                    stop[0] = True
                    break
                ip = frame[14:]
                if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
                    continue
                ihl = (ip[0] & 0x0F) * 4
                udp = ip[ihl:]
                if len(udp) < 8:
                    continue
                sport, dport = struct.unpack("!HH", udp[:4])
                if port not in (sport, dport):
                    continue
                payload = udp[8:]
                f.write(struct.pack("!I", len(payload)) + payload)
            f.flush()


if __name__ == "__main__":
    main()
