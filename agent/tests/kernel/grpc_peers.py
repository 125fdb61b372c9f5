#!/usr/bin/env python3
"""Real gRPC and HTTP/2 peers for the tests (run inside a network namespace):

    grpc_peers.py grpc-server PORT      /shop.Cart/Add answers OK, Checkout UNAVAILABLE, Slow after 2 s
    grpc_peers.py grpc-client HOST:PORT Add, Checkout, Slow (0.5 s deadline), Slow cancelled by the client
                                        after 0.3 s (5 s deadline), Add; prints the codes as JSON
    grpc_peers.py h2-server PORT        /ok 200, /reset RST_STREAM REFUSED_STREAM, /calm GOAWAY ENHANCE_YOUR_CALM
    grpc_peers.py h2-client HOST PORT [PAUSE]
                                        /ok, (PAUSE seconds, after "paused" on stderr) /reset, /calm;
                                        prints what it saw as JSON

gRPC is Python's grpcio (cleartext, prior knowledge); HTTP/2 is the `h2` protocol stack. Servers print
"listening" once they accept connections."""

import json
import socket
import sys
import time


def grpc_server(port):
    from concurrent import futures

    import grpc

    def add(req, ctx):
        return b"ok"

    def checkout(req, ctx):
        ctx.abort(grpc.StatusCode.UNAVAILABLE, "no healthy upstream")

    def slow(req, ctx):
        time.sleep(2)
        return b"late"

    methods = {"Add": add, "Checkout": checkout, "Slow": slow}
    handler = grpc.method_handlers_generic_handler(
        "shop.Cart", {n: grpc.unary_unary_rpc_method_handler(f) for n, f in methods.items()})
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def grpc_client(target, calls=("Add:5", "Checkout:5", "Slow:0.5", "Slow:cancel", "Add:5")):
    import grpc

    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    results = []
    for call in calls:
        method, timeout = call.split(":")
        if timeout == "cancel":
            # The application gives up: grpcio sends RST_STREAM CANCEL.
            future = channel.unary_unary("/shop.Cart/" + method).future(b"x", timeout=5)
            time.sleep(0.3)
            future.cancel()
            results.append([method, future.code().name if future.done() else "not done"])
            continue
        try:
            channel.unary_unary("/shop.Cart/" + method)(b"x", timeout=float(timeout))
            results.append([method, "OK"])
        except grpc.RpcError as e:
            results.append([method, e.code().name])
    channel.close()
    print(json.dumps(results))


def h2_server(port):
    import h2.config
    import h2.connection
    import h2.events
    from h2.errors import ErrorCodes

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(1)
    print("listening", flush=True)
    sock, _ = s.accept()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    done = False
    while not done:
        data = sock.recv(65535)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                path = dict(ev.headers)[b":path"]
                if path == b"/ok":
                    conn.send_headers(ev.stream_id, [(":status", "200")], end_stream=True)
                elif path == b"/reset":
                    conn.reset_stream(ev.stream_id, error_code=ErrorCodes.REFUSED_STREAM)
                elif path == b"/calm":
                    # The stream asking is not processed (last stream: the one before it).
                    conn.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM,
                                          additional_data=b"too_many_requests", last_stream_id=ev.stream_id - 2)
                    done = True
        sock.sendall(conn.data_to_send())
    sock.close()


def h2_client(host, port, pause="0"):
    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection((host, int(port)), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    seen = []
    for path in ("/ok", "/reset", "/calm"):
        if path == "/reset" and float(pause) > 0:
            # The connection is open and its HPACK tables in use: a capture that starts now joins mid-stream.
            print("paused", file=sys.stderr, flush=True)
            time.sleep(float(pause))
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "web"), (":path", path)],
                          end_stream=True)
        sock.sendall(conn.data_to_send())
        waiting = True
        while waiting:
            data = sock.recv(65535)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    seen.append([path, dict(ev.headers)[b":status"].decode()])
                elif isinstance(ev, h2.events.StreamReset):
                    seen.append([path, "reset " + ev.error_code.name])
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    seen.append([path, "goaway " + ev.error_code.name])
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    waiting = False
            sock.sendall(conn.data_to_send())
    sock.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    modes = {"grpc-server": grpc_server, "grpc-client": grpc_client, "h2-server": h2_server, "h2-client": h2_client}
    mode, *args = sys.argv[1:]
    if mode == "grpc-client" and len(args) > 1:
        grpc_client(args[0], args[1:])
    else:
        modes[mode](*args)
