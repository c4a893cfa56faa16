#!/usr/bin/env python3
"""Writes the seed corpora: a few valid frames (fuzz/seeds/frame_decoder) and request
heads (fuzz/seeds/request_head), byte for byte as the TCP transport puts them on the wire,
and gRPC length-prefixed messages cut into DATA frames (fuzz/seeds/grpc_prefix).

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


# grpc_prefix inputs: a control byte (bits 0-2 the number of chunk lengths that follow,
# 0x08 trailers, 0x10 a reset after the data, 0x20 the body stalls before each frame),
# the chunk lengths, then the body. See fuzz_targets/grpc_prefix.rs.
TRAILERS, RESET, STALL = 0x08, 0x10, 0x20


def grpc(message, flag=0):
    return bytes([flag]) + struct.pack(">I", len(message)) + message


def chunked(body, lengths=(), control=0):
    assert len(lengths) <= 7
    return bytes([control | len(lengths)]) + bytes(lengths) + body


grpc_inputs = {
    "one_frame": chunked(grpc(b"hello")),
    "empty_message": chunked(grpc(b"")),
    "split_in_prefix": chunked(grpc(b"hello world"), (3, 4)),
    "byte_by_byte": chunked(grpc(b"hi there"), (1,) * 7),
    "empty_data_frames": chunked(grpc(b"abc"), (0, 5, 0)),
    "trailers": chunked(grpc(b'{"name":"world"}'), (5,), TRAILERS),
    "stalled": chunked(grpc(b"slow"), (2, 2), STALL | TRAILERS),
    "at_small_limit": chunked(grpc(b"y" * 16)),
    "over_small_limit": chunked(grpc(b"x" * 17), (5,)),
    "two_messages": chunked(grpc(b"first") + grpc(b"second"), (10,)),
    "compressed": chunked(grpc(b"abc", flag=1)),
    "bad_flag": chunked(b"\x02\x00\x00\x00\x00"),
    "too_large": chunked(b"\x00\xff\xff\xff\xff"),
    "truncated": chunked(grpc(b"hello")[:8], (4,)),
    "reset": chunked(grpc(b"hello")[:7], (), RESET),
    "missing": chunked(b"", (), TRAILERS),
}

for name, corpus in (("frame_decoder", frames), ("request_head", heads),
                     ("grpc_prefix", grpc_inputs)):
    out_dir = os.path.join(HERE, "seeds", name)
    os.makedirs(out_dir, exist_ok=True)
    for seed, data in corpus.items():
        with open(os.path.join(out_dir, seed), "wb") as f:
            f.write(data)
    print(f"{len(corpus)} seeds in {out_dir}")
