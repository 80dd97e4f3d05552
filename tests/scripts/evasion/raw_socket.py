"""Creates a raw socket and closes it again without sending anything: an
AF_INET SOCK_RAW (IPPROTO_ICMP) socket, plus an AF_PACKET SOCK_RAW
(ETH_P_ALL) one with --packet. Needs CAP_NET_RAW.

argv: [--packet]. Prints one JSON line with each socket's family, type,
protocol and fd.
"""
import json
import socket
import sys

TECHNIQUE = "raw_socket"
ETH_P_ALL = 0x0003


def main(argv):
    if argv not in ([], ["--packet"]):
        raise SystemExit("usage: raw_socket.py [--packet]")
    wanted = [("AF_INET", socket.AF_INET, "IPPROTO_ICMP", socket.IPPROTO_ICMP)]
    if argv:
        # AF_PACKET takes its protocol in network byte order.
        wanted.append(("AF_PACKET", socket.AF_PACKET, "ETH_P_ALL", socket.htons(ETH_P_ALL)))
    made = []
    for name, family, proto_name, proto in wanted:
        sock = socket.socket(family, socket.SOCK_RAW, proto)
        made.append({"family": name, "type": "SOCK_RAW", "protocol": proto,
                     "protocol_name": proto_name, "fd": sock.fileno()})
        sock.close()
    return {"technique": TECHNIQUE, "ok": True, "sockets": made}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except Exception as exc:
        sys.stderr.write("%s: %s\n" % (TECHNIQUE, exc))
        sys.exit(1)
    print(json.dumps(result))
