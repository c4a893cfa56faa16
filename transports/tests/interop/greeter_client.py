"""A stock grpcio client calling the Rust provider of helloworld.Greeter.

usage: greeter_client.py STUBS_DIR HOST:PORT

Checks a successful call with metadata sent (the provider echoes it in the reply), an
application error (code and message), a deadline exceeded, and a compressed call refused.
Prints one line per check; exits non-zero on the first failure.
"""

import sys
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


def check(name, condition, detail):
    if not condition:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def main():
    with grpc.insecure_channel(sys.argv[2]) as channel:
        stub = helloworld_pb2_grpc.GreeterStub(channel)

        reply, call = stub.SayHello.with_call(
            helloworld_pb2.HelloRequest(name="python"),
            metadata=[("x-trace-id", "py-trace-7")],
            timeout=10,
        )
        check("success", "python" in reply.message, reply.message)
        check("metadata sent", "py-trace-7" in reply.message, reply.message)
        served_by = dict(call.initial_metadata()).get("x-served-by")
        check("metadata received", served_by == "rust", call.initial_metadata())
        check("status ok", call.code() == grpc.StatusCode.OK, call.code())

        try:
            stub.SayHello(helloworld_pb2.HelloRequest(name=""), timeout=10)
            check("application error", False, "the call succeeded")
        except grpc.RpcError as error:
            check(
                "application error code",
                error.code() == grpc.StatusCode.INVALID_ARGUMENT,
                f"{error.code()} {error.details()!r}",
            )
            check(
                "application error message",
                "name must not be empty" in (error.details() or ""),
                repr(error.details()),
            )

        started = time.monotonic()
        try:
            stub.SayHello(helloworld_pb2.HelloRequest(name="slow"), timeout=0.3)
            check("deadline", False, "the call succeeded")
        except grpc.RpcError as error:
            check(
                "deadline exceeded",
                error.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{error.code()} {error.details()!r}",
            )
            check("deadline on time", time.monotonic() - started < 5, time.monotonic() - started)

        try:
            stub.SayHello(
                helloworld_pb2.HelloRequest(name="python"),
                metadata=[("x-trace-id", "bad")],
                timeout=10,
                compression=grpc.Compression.Gzip,
            )
            check("compression refused", False, "the call succeeded")
        except grpc.RpcError as error:
            check(
                "compression refused",
                error.code() == grpc.StatusCode.UNIMPLEMENTED,
                f"{error.code()} {error.details()!r}",
            )

        # The connection survived all of the above.
        reply = stub.SayHello(helloworld_pb2.HelloRequest(name="again"), timeout=10)
        check("still connected", "again" in reply.message, reply.message)


if __name__ == "__main__":
    main()
