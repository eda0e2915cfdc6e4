"""A loopback front for fake-gcs-server, for m1's GCS tests.

object_store's GCS client speaks the XML API; fake-gcs-server answers all of it that m1 uses
(GET and HEAD with ranges, list-type=2 listing, DELETE) except the plain object upload, `PUT
/BUCKET/OBJECT`, which it only takes as a signed URL. This front passes every request through
unchanged but that one, which it turns into the JSON API's media upload (keeping the
`x-goog-if-generation-match` precondition that conditional creates rely on) and answers with the
headers the XML API gives (ETag, x-goog-generation).

The fake-gcs-server build on PyPI ignores `ifGenerationMatch=0` on media uploads, so this front
keeps that precondition itself: under one lock it looks the object up and answers 412 if it
exists, else uploads. Every upload goes through here, so the lock makes "create unless exists"
atomic as GCS does. (So on GCS, the concurrent-writers test checks m1's use of the precondition
and its 412 handling; the atomicity is this front's.)

    python gcs_adapter.py LISTEN_PORT UPSTREAM_PORT
"""

import http.client
import http.server
import json
import sys
import threading
import urllib.parse

UPSTREAM = ("127.0.0.1", 0)
CREATE_LOCK = threading.Lock()
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


def forward(method, path, headers, body):
    conn = http.client.HTTPConnection(*UPSTREAM, timeout=60)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheaders(), data


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        # fake-gcs-server routes the XML API by the public host the client addressed.
        headers["Host"] = self.headers.get("Host", "")
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        upload = self.command == "PUT" and len(parts) == 2 and not url.query and "x-goog-copy-source" not in {
            k.lower() for k in headers
        }
        if upload:
            bucket, name = parts[0], urllib.parse.unquote(parts[1])
            query = {"uploadType": "media", "name": name}
            match = self.headers.get("x-goog-if-generation-match")
            if match is not None:
                query["ifGenerationMatch"] = match
            path = f"/upload/storage/v1/b/{bucket}/o?{urllib.parse.urlencode(query)}"
            if match == "0":
                with CREATE_LOCK:
                    meta_path = f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"
                    exists = forward("GET", meta_path, headers, b"")[0] == 200
                    if exists:
                        status, resp_headers, data = 412, [], b"precondition failed: the object exists"
                    else:
                        status, resp_headers, data = forward("POST", path, headers, body)
            else:
                status, resp_headers, data = forward("POST", path, headers, body)
            out_headers = []
            if status == 200:
                meta = json.loads(data)
                out_headers = [("ETag", '"%s"' % meta.get("etag", meta.get("md5Hash", ""))),
                               ("x-goog-generation", str(meta.get("generation", "")))]
                data = b""
        else:
            status, resp_headers, data = forward(self.command, self.path, headers, body)
            out_headers = [(k, v) for k, v in resp_headers if k.lower() not in HOP_HEADERS]
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        # A HEAD answer has no body but tells the object's length.
        upstream_length = dict((k.lower(), v) for k, v in resp_headers).get("content-length")
        length = upstream_length if self.command == "HEAD" and upstream_length else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = handle_any


def main():
    global UPSTREAM
    UPSTREAM = ("127.0.0.1", int(sys.argv[2]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Front)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
