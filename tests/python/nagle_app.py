"""A plain Python web app, as users write them: http.server, no TCP_NODELAY.

`python3 nagle_app.py DIR PROTOCOL [nodelay]` serves DIR's files with
http.server's own SimpleHTTPRequestHandler (what `python3 -m http.server`
runs) and echoes POST bodies, on 127.0.0.1 with an ephemeral port, speaking
PROTOCOL (`HTTP/1.0` or `HTTP/1.1`). It prints `port N` once listening.

Like every BaseHTTPRequestHandler it writes a response's head and its body in
two send() calls on a socket with Nagle's algorithm on (Python's default):
the body waits until the head is acknowledged. `nodelay` sets the handler's
`disable_nagle_algorithm` (TCP_NODELAY on each accepted socket), as an app
that fixed this would.
"""

import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class Handler(SimpleHTTPRequestHandler):
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


def main():
    directory, protocol = sys.argv[1], sys.argv[2]
    Handler.protocol_version = protocol
    # socketserver's own switch: TCP_NODELAY on each accepted socket.
    Handler.disable_nagle_algorithm = sys.argv[3:] == ["nodelay"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=directory))
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
