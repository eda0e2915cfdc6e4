#!/usr/bin/env python3
"""Whole-process figures of the management API (issue 14's targets), each beside a baseline from
the same run:

  stage     upload and download of a 1 GB file through `m1 serve` (PUT / GET
            /v1/stage/{id}/fs/...) against `cp` on the same disk, and the server's memory growth
  resume    resume from suspend to the first answered `get`, and a `get` that resumes an
            idle-suspended environment, on a lake of --rows records (default 10 M), against a
            warm `get`
  scrape    `GET /metrics` with 100 open environments, against `/ops/ping` on the same
            keep-alive connection

    cargo build --release -p m1-cli
    .venv/bin/python benches/manage_compare.py [--only stage,resume,scrape] [--rows 10000000]

curl sends and receives the stage's bytes (as a user would); python's http.client times the
small calls on one keep-alive connection. Files live under $CARGO_TARGET_DIR/bench-manage/.
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
WORK = os.path.join(TARGET, "bench-manage")


def run(m1, home, *args, check=True):
    env = dict(os.environ, M1_HOME=home)
    env.pop("M1_REMOTE", None)
    out = subprocess.run([m1, *args], env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"m1 {' '.join(args)}: {out.stderr}")
    return out.stdout


class Server:
    def __init__(self, m1, home, *options):
        env = dict(os.environ, M1_HOME=home)
        self.proc = subprocess.Popen([m1, "serve", "-port", "0", *options], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        self.base = next(w for w in line.split() if w.startswith("http://127.0.0.1:"))
        self.port = int(self.base.rsplit(":", 1)[1])

    def rss(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def login(m1, home, server):
    run(m1, home, "owner", "-username", "owner", "-password", "passphrase", check=False)
    client = os.path.join(home, "client")
    run(m1, client, "auth", "-remote", server.base, "-username", "owner", "-password", "passphrase")
    with open(os.path.join(client, "remote.json")) as f:
        return json.load(f)["ops"]["token"]


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def stage(m1, size_mb, reps):
    home = tempfile.mkdtemp(prefix="stage-", dir=WORK)
    src = os.path.join(WORK, f"stage-{size_mb}mb.bin")
    if not os.path.exists(src) or os.path.getsize(src) != size_mb << 20:
        with open(src, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(size_mb):
                f.write(block[i % 7:] + block[: i % 7])
    run(m1, home, "ops", "env/create", "-env", "big")
    env_id = json.loads(run(m1, home, "ops", "env/get", "-env", "big"))["id"]
    server = Server(m1, home)
    token = login(m1, home, server)
    url = f"{server.base}/v1/stage/{env_id}/fs/big.bin"
    auth = ["-H", f"Authorization: Bearer {token}"]
    rows = []
    before = server.rss()
    for _ in range(reps):
        dst = os.path.join(home, "copy.bin")
        cp = timed(["cp", src, dst])
        os.remove(dst)
        durable = timed(["sh", "-c", f"cp '{src}' '{dst}' && sync '{dst}'"])
        os.remove(dst)
        up = timed(["curl", "-sf", "-T", src, *auth, url])
        down = timed(["curl", "-sf", "-o", dst, *auth, url])
        os.remove(dst)
        cat = timed(["sh", "-c", f"cat '{src}' > '{dst}'"])
        os.remove(dst)
        rows.append((cp, up, down, cat, durable))
    peak = server.rss("VmHWM")
    stored = os.path.join(home, "envs", "big", "stage", "big.bin")
    same = subprocess.run(["cmp", "-s", src, stored]).returncode == 0
    server.stop()
    mb = size_mb * 1048576 / 1e6
    med = lambda i: statistics.median(r[i] for r in rows)
    print(f"\nstage, {size_mb} MiB file, median of {reps} (load {os.getloadavg()[0]:.2f})")
    print(f"  cp                 {med(0):7.2f} s  {mb / med(0):7.0f} MB/s")
    print(f"  cp && sync         {med(4):7.2f} s  {mb / med(4):7.0f} MB/s")
    print(f"  upload (PUT)       {med(1):7.2f} s  {mb / med(1):7.0f} MB/s  = {med(0) / med(1):.0%} of cp, {med(4) / med(1):.0%} of cp && sync")
    print(f"  cat > file         {med(3):7.2f} s  {mb / med(3):7.0f} MB/s")
    print(f"  download (GET)     {med(2):7.2f} s  {mb / med(2):7.0f} MB/s  = {med(3) / med(2):.0%} of cat, {med(0) / med(2):.0%} of cp")
    print(f"  server RSS before {before >> 20} MB, peak {peak >> 20} MB: growth {(peak - before) >> 20} MB; stored copy identical: {same}")
    shutil.rmtree(home)


def call(conn, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]}")
    return data


def lake_home(m1, rows):
    home = os.path.join(WORK, f"lake-{rows}")
    if os.path.exists(os.path.join(home, "ready")):
        return home
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    data = os.path.join(WORK, f"rows-{rows}.jsonl")
    with open(data, "w") as f:
        for i in range(rows):
            f.write(f'{{"name": "user{i}", "n": {i}, "city": "c{i % 977}", "score": {i % 1000 / 10}}}\n')
    run(m1, home, "ops", "env/create", "-env", "lake")
    t = time.perf_counter()
    run(m1, home, "lake", "publish", "-file", data, "-infer", "true")
    print(f"  (published {rows} records in {time.perf_counter() - t:.1f} s)")
    os.remove(data)
    open(os.path.join(home, "ready"), "w").close()
    return home


def resume(m1, rows, reps):
    home = lake_home(m1, rows)
    run(m1, home, "lake", "system", "-idle-timeout-ms", "1000")
    run(m1, home, "ops", "env/settings", "-env", "lake", "-settings", '{"idleScaling": false}')
    run(m1, home, "init", "lake", "-username", "admin", "-password", "passphrase", check=False)
    server = Server(m1, home)
    token = login(m1, home, server)
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("POST", "/lake/auth", body="username=admin&password=passphrase",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    env_token = json.loads(conn.getresponse().read())["token"]

    def get(key):
        conn.request("GET", f"/lake/get?ids={key}", headers={"m1-auth-token": env_token})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body
        return body

    def ops(path, params):
        conn.request("POST", f"/ops/{path}", body=params, headers={"Authorization": f"Bearer {token}",
                                                                    "Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body

    warm, cold, idle = [], [], []
    for i in range(50):
        get(i * 7919 % rows)
    for i in range(reps * 10):
        t = time.perf_counter()
        get(i * 104729 % rows)
        warm.append(time.perf_counter() - t)
    for i in range(reps):
        ops("env/suspend", "env=lake")
        t = time.perf_counter()
        ops("env/resume", "env=lake")
        get((i * 15485863) % rows)
        cold.append(time.perf_counter() - t)
    ops("env/settings", 'env=lake&settings={"idleScaling": true, "idleTimeoutMinutes": 5}')
    held = []
    for i in range(reps):
        before = server.rss()
        get(i)
        open_rss = server.rss()
        while True:
            conn.request("GET", "/ops/env/get?env=lake", headers={"Authorization": f"Bearer {token}"})
            state = json.loads(conn.getresponse().read())["state"]
            if state == "idle":
                break
            time.sleep(0.2)
        time.sleep(0.3)
        held.append((open_rss, server.rss()))
        t = time.perf_counter()
        get((i * 32452843) % rows)
        idle.append(time.perf_counter() - t)
        del before
    server.stop()
    ms = lambda xs: statistics.median(xs) * 1e3
    print(f"\nresume, {rows} records, median of {reps} (load {os.getloadavg()[0]:.2f})")
    print(f"  warm get                         {ms(warm):8.2f} ms")
    print(f"  suspend, then resume + first get {ms(cold):8.2f} ms  (max {max(cold) * 1e3:.1f})")
    print(f"  idle-suspended, first get        {ms(idle):8.2f} ms  (max {max(idle) * 1e3:.1f})")
    print(f"  server RSS open {statistics.median(h[0] for h in held) / 2**20:.1f} MB, idle-suspended "
          f"{statistics.median(h[1] for h in held) / 2**20:.1f} MB")


def scrape(m1, envs, reps):
    home = tempfile.mkdtemp(prefix="scrape-", dir=WORK)
    for i in range(envs):
        run(m1, home, "ops", "env/create", "-env", f"e{i}")
    server = Server(m1, home)
    token = login(m1, home, server)
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    for i in range(envs):
        call(conn, "GET", f"/e{i}/ping")
    time.sleep(3)  # one background sample over all of them
    ping, metrics = [], []
    for _ in range(20):
        call(conn, "GET", "/metrics", token)
    size = 0
    for _ in range(reps):
        t = time.perf_counter()
        call(conn, "GET", "/ops/ping")
        ping.append(time.perf_counter() - t)
        t = time.perf_counter()
        size = len(call(conn, "GET", "/metrics", token))
        metrics.append(time.perf_counter() - t)
    server.stop()
    shutil.rmtree(home)
    ms = lambda xs, q=0.5: sorted(xs)[int(q * (len(xs) - 1))] * 1e3
    print(f"\nscrape, {envs} open environments, {reps} scrapes (load {os.getloadavg()[0]:.2f})")
    print(f"  /ops/ping  p50 {ms(ping):6.2f} ms  p99 {ms(ping, 0.99):6.2f} ms")
    print(f"  /metrics   p50 {ms(metrics):6.2f} ms  p99 {ms(metrics, 0.99):6.2f} ms  ({size} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m1", default=os.path.join(TARGET, "release", "m1"))
    ap.add_argument("--only", default="stage,resume,scrape")
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    print(f"m1 {a.m1}; load {os.getloadavg()}")
    only = a.only.split(",")
    if "stage" in only:
        stage(a.m1, a.size_mb, a.reps)
    if "scrape" in only:
        scrape(a.m1, 100, 200)
    if "resume" in only:
        resume(a.m1, a.rows, a.reps)


if __name__ == "__main__":
    main()
