"""A stock grpcio server of helloworld.Greeter for the Rust client to call.

usage: greeter_server.py STUBS_DIR

Binds a free 127.0.0.1 port, prints it on stdout, serves until stdin closes.
SayHello("") aborts with INVALID_ARGUMENT; SayHello("slow") sleeps 2 s; otherwise the
reply names the caller's x-trace-id metadata, and the reply carries x-served-by in its
initial metadata.
"""

import sys
import time
from concurrent import futures

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import helloworld_pb2  # noqa: E402
import helloworld_pb2_grpc  # noqa: E402


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    def SayHello(self, request, context):
        if request.name == "":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty (python)")
        if request.name == "slow":
            time.sleep(2)
        metadata = dict(context.invocation_metadata())
        context.send_initial_metadata([("x-served-by", "python")])
        trace = metadata.get("x-trace-id", "none")
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}! trace={trace}")

    def SayHelloToAll(self, request, context):
        replies = [
            helloworld_pb2.HelloReply(message=f"Hello, {p.name}{request.suffix}")
            for p in request.people
        ]
        return helloworld_pb2.HelloAllReply(replies=replies, count=len(replies))


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
