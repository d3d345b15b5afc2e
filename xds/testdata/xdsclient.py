"""The tests' Python xDS client, as internal/xdsclient is grpc-go's.

Calls wayfinder.examples.hello.HelloService/SayHello through an xds:///
target, one call after another, and prints one line per call
("ok <server name>" or "err <code> <message>") until its standard input
closes. The bootstrap comes from GRPC_XDS_BOOTSTRAP_CONFIG, read by
grpcio's core at start. The first call waits for the channel to be
ready; later calls are fail-fast with a deadline.

With a third argument name=value, every call carries that request
header (for a ring_hash route that hashes on it).

Usage: python3 xdsclient.py <hello.proto> [target [name=value]]
"""

import os
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def load(proto):
    """Reads hello.proto at run time (protoc from grpc-tools) into classes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "hello.pb")
        inc = os.path.dirname(os.path.abspath(proto))
        if protoc.main(["protoc", "-I" + inc, "--descriptor_set_out=" + out, os.path.basename(proto)]) != 0:
            raise SystemExit("xdsclient.py: protoc failed on " + proto)
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    factory = message_factory.MessageFactory(pool)
    req = factory.GetPrototype(pool.FindMessageTypeByName("wayfinder.examples.hello.HelloRequest"))
    resp = factory.GetPrototype(pool.FindMessageTypeByName("wayfinder.examples.hello.HelloResponse"))
    return req, resp


def main():
    proto = sys.argv[1]
    target = sys.argv[2] if len(sys.argv) > 2 else "xds:///hello"
    metadata = [tuple(sys.argv[3].split("=", 1))] if len(sys.argv) > 3 else None
    req_cls, resp_cls = load(proto)
    done = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    with grpc.insecure_channel(target) as channel:
        say = channel.unary_unary(
            "/wayfinder.examples.hello.HelloService/SayHello",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        first = True
        while not done.is_set():
            try:
                reply = say(req_cls(name="xds", num1=1, num2=2),
                            timeout=60 if first else 5, wait_for_ready=first,
                            metadata=metadata)
                first = False
                line = "ok " + reply.message.rsplit(" ", 1)[-1]
            except grpc.RpcError as e:
                if done.is_set():
                    break
                line = "err %s %s" % (e.code().name, (e.details() or "").replace("\n", " "))
            print(line, flush=True)


if __name__ == "__main__":
    main()
