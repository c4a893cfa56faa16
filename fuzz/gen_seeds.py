#!/usr/bin/env python3
"""Writes the seed corpora: a few valid frames (fuzz/seeds/frame_decoder) and request
heads (fuzz/seeds/request_head), byte for byte as the TCP transport puts them on the wire.

Run from anywhere: python3 fuzz/gen_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REQUEST, TWO_WAY, EVENT = 0x80, 0x40, 0x20
BINCODE, JSON = 24, 6


def header(flags, status, request_id, body_len):
    return struct.pack(">HBBQI", 0xDABB, flags, status, request_id, body_len)


def frame(flags, status, request_id, body=b""):
    return header(flags, status, request_id, len(body)) + body


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def head(service, version, method, attachments=()):
    out = string(service) + string(version) + string(method)
    out += struct.pack(">H", len(attachments))
    for k, v in attachments:
        out += string(k) + string(v)
    return out


def bincode_bytes(payload):
    # bincode 2 standard config: varint length (< 251 in one byte), then the bytes.
    assert len(payload) < 251
    return bytes([len(payload)]) + payload


ECHO_HEAD = head("Echo", "", "echo", [("timeout", "5000")])
TRACED_HEAD = head("demo.Greeter", "1.0.0", "greet",
                   [("timeout", "3000"), ("trace-id", "4bf92f3577b34da6"), ("token", "s3cret")])

frames = {
    "heartbeat_request": frame(REQUEST | TWO_WAY | EVENT, 0, 1),
    "heartbeat_response": frame(EVENT, 20, 1),
    "cancel_event": frame(REQUEST | EVENT, 0, 42),
    "call_bincode": frame(REQUEST | TWO_WAY | BINCODE, 0, 7, ECHO_HEAD + bincode_bytes(b"hello")),
    "call_json": frame(REQUEST | TWO_WAY | JSON, 0, 8, ECHO_HEAD + b'[[104,105]]'),
    "oneway_json": frame(REQUEST | JSON, 0, 9, TRACED_HEAD + b'["world"]'),
    "response_ok_bincode": frame(BINCODE, 20, 7, bincode_bytes(b"hello")),
    "response_not_found": frame(BINCODE, 60, 10, b"service not found: Nope (version \"\")"),
    "response_too_large": frame(0, 40, 11, b"frame length 8388609 exceeds limit 8388608"),
    "oversized_header": header(REQUEST | TWO_WAY | BINCODE, 0, 12, 8 * 1024 * 1024 + 1),
    "truncated_call": frame(REQUEST | TWO_WAY | BINCODE, 0, 13, ECHO_HEAD + bincode_bytes(b"x"))[:25],
}
frames["pipelined"] = (frames["call_bincode"] + frames["heartbeat_request"]
                       + frames["call_json"] + frames["cancel_event"])

heads = {
    "echo": ECHO_HEAD + bincode_bytes(b"args"),
    "traced": TRACED_HEAD + b'["world"]',
    "no_attachments": head("Echo", "", "echo"),
    "empty_strings": head("", "", ""),
    "utf8": head("服务", "v2", "méthode", [("clé", "值")]),
}

for name, corpus in (("frame_decoder", frames), ("request_head", heads)):
    out_dir = os.path.join(HERE, "seeds", name)
    os.makedirs(out_dir, exist_ok=True)
    for seed, data in corpus.items():
        with open(os.path.join(out_dir, seed), "wb") as f:
            f.write(data)
    print(f"{len(corpus)} seeds in {out_dir}")
