"""Runs workload W (../shared/workloads/fmnist-dir05) with one fl-server and N fl-client processes
on loopback and summarises metrics.jsonl. Shared by the bench/ scripts."""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKLOAD = os.path.join(ROOT, "..", "shared", "workloads", "fmnist-dir05")
DENSE_BYTES = 1663370 * 4  # fedavg_cnn in float32


def wait_port_file(path, proc, timeout=60):
    """Waits (bounded) for fl-server's --port_file to name its bound port; exits the benchmark if
    the server dies or never serves. Returns the port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: fl-server exited {proc.returncode} before serving")
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"bench: fl-server wrote no {path} within {timeout} s")


def wait_rss(proc, timeout):
    """Waits for proc; returns (exit code, peak RSS in MiB) from wait4's rusage. Also leaves the
    process's CPU time (user + system seconds) in proc.cpu_seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.cpu_seconds = usage.ru_utime + usage.ru_stime
            proc.cpu_user, proc.cpu_sys = usage.ru_utime, usage.ru_stime
            return proc.returncode, usage.ru_maxrss / 1024.0
        time.sleep(0.2)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.cpu_seconds = usage.ru_utime + usage.ru_stime
    proc.cpu_user, proc.cpu_sys = usage.ru_utime, usage.ru_stime
    return -9, usage.ru_maxrss / 1024.0


def drop_page_cache():
    """sync + drop clean page cache; False when not permitted (not root, or in a container)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def run(build, workload=DEFAULT_WORKLOAD, rounds=20, clients=10, server_args=(), client_args=(),
        label="run", insecure=True, server_addr=None, adversaries=None, client_data=None,
        allow_server_failure=False):
    """Runs W and summarises it. Plaintext (--insecure on both sides) unless insecure=False, in
    which case server_args / client_args carry the TLS flags. server_addr(port) -> "host:port"
    lets clients reach the server through something else (e.g. a byte-counting proxy).
    adversaries maps a client index to extra fl-adversary flags (e.g. ["--attack=sign_flip",
    "--attack_scale=4"]): that device runs tests' fl-adversary instead of fl-client.
    client_data(i) -> flags replaces W's partition file (e.g. a --partition=labels:2 split).
    allow_server_failure: a run whose fl-server exits non-zero (e.g. FedAvg under attack diverges,
    every update is then NaN and refused, and a round misses its quorum in every attempt) is
    summarised over the rounds that closed, with server_exit_code and server_error, instead of
    ending the benchmark."""
    bindir = os.path.join(build, "bin")
    part = os.path.join(workload, f"partition_dir05_{clients}clients_seed0.txt")
    init = os.path.join(workload, "init_cnn_seed0.f32")
    needed = [init, os.path.join(bindir, "fl-server"), os.path.join(bindir, "fl-client")]
    if not client_data:
        needed.append(part)
    if adversaries:
        needed.append(os.path.join(bindir, "fl-adversary"))
    for f in needed:
        if not os.path.exists(f):
            sys.exit(f"bench: missing {f} (build with scripts/build; the workload lives in ../shared)")
    tmp = tempfile.mkdtemp(prefix=f"edgefl-bench-{label}-")
    # Freshly written binaries and libraries sit in the page cache in large folios, which inflates
    # every process's RSS by ~30 MiB until the cache is dropped: drop it (root only) so that peak
    # RSS measures edgefl, not the build that just ran.
    cache_dropped = drop_page_cache()
    t0 = time.time()
    # The server binds a port of its own choosing and names it in --port_file (no race with
    # another process taking a port picked beforehand); the devices start once it serves.
    server = subprocess.Popen(
        [os.path.join(bindir, "fl-server"), "--listen=127.0.0.1:0", f"--port_file={tmp}/port",
         f"--rounds={rounds}",
         "--model=fedavg_cnn", f"--init_weights={init}", f"--min_clients={clients}",
         "--set=client.lr=0.05", "--set=client.batch_size=32", "--set=client.epochs=1",
         "--deadline=600", f"--out={tmp}/run"] + (["--insecure"] if insecure else [])
        + list(server_args),
        stderr=open(f"{tmp}/server.log", "w"), stdout=subprocess.DEVNULL)
    port = wait_port_file(f"{tmp}/port", server)
    target = server_addr(port) if server_addr else f"127.0.0.1:{port}"
    procs = []
    adversaries = adversaries or {}
    for i in range(clients):
        binary = "fl-adversary" if i in adversaries else "fl-client"
        data = client_data(i) if client_data else [f"--partition_file={part}", f"--client_index={i}"]
        procs.append(subprocess.Popen(
            [os.path.join(bindir, binary), f"--server={target}", "--data=fmnist"] + data
            + ["--threads=1", "--progress=never",
               f"--state_dir={tmp}/state"] + (["--insecure"] if insecure else [])
            + list(client_args) + list(adversaries.get(i, [])),
            stderr=open(f"{tmp}/client{i}.log", "w"), stdout=subprocess.DEVNULL))
    code, server_rss = wait_rss(server, rounds * 600 + 600)
    if code != 0 and allow_server_failure:
        # Devices would keep retrying a server that is gone: stop them now.
        for c in procs:
            if c.poll() is None:
                c.terminate()
    client_rss = [round(wait_rss(c, 120)[1], 1) for c in procs]
    wall = time.time() - t0
    server_error = None
    if code != 0:
        if not allow_server_failure:
            sys.exit(f"bench: fl-server exited {code}; logs in {tmp}")
        errors = [l.strip() for l in open(f"{tmp}/server.log", errors="replace") if " E " in l]
        server_error = errors[-1] if errors else None
    metrics = f"{tmp}/run/metrics.jsonl"
    rows = [json.loads(l) for l in open(metrics) if l.strip()] if os.path.exists(metrics) else []
    rows.sort(key=lambda r: r["round"])
    times = [r["unix_time"] for r in rows]
    round_wall = ([round(rows[0]["round_seconds"], 2)] + [round(b - a, 2) for a, b in zip(times, times[1:])]
                  if rows else [])
    first_85 = next((r["round"] for r in rows if (r.get("test_accuracy") or 0) >= 0.85), None)
    reported = max(1, sum(r["clients_reported"] for r in rows))
    return {
        "server_exit_code": code,
        "server_error": server_error,
        "rounds_closed": len(rows),
        "rounds": rounds,
        "test_accuracy": [r.get("test_accuracy") for r in rows],
        "round_wall_seconds": round_wall,
        "mean_round_wall_seconds": round(sum(round_wall) / max(1, len(round_wall)), 2),
        "mean_round_wall_seconds_excl_first": round(sum(round_wall[1:]) / max(1, len(round_wall) - 1), 2),
        "eval_seconds": [r["eval_seconds"] for r in rows],
        "first_round_at_85": first_85,
        "seconds_to_85": round(rows[first_85 - 1]["unix_time"] - t0, 1) if first_85 else None,
        "total_seconds": round(wall, 1),
        "peak_rss_mib": {"server": round(server_rss, 1), "clients": client_rss,
                         "client_max": max(client_rss), "page_cache_dropped_first": cache_dropped},
        "bytes_down_per_client_round": round(sum(r["bytes_down"] for r in rows) / reported),
        "bytes_up_per_client_round": round(sum(r["bytes_up"] for r in rows) / reported),
        "bytes_up_per_round": [r["bytes_up"] for r in rows],
        "bytes_down_per_round": [r["bytes_down"] for r in rows],
        "clients_reported_per_round": [r["clients_reported"] for r in rows],
        "clients_failed_total": sum(r["clients_failed"] for r in rows),
        "rejected_total": rows[-1].get("rejected_total", 0) if rows else 0,
        "dp_epsilon": [r.get("dp_epsilon") for r in rows] if any("dp_epsilon" in r for r in rows) else None,
        # aggregation.averaging: test_accuracy is the averaged model's, this the global model's.
        "global_test_accuracy": ([r.get("global_test_accuracy") for r in rows]
                                 if any("global_test_accuracy" in r for r in rows) else None),
        "cpu_seconds": {"server": round(server.cpu_seconds, 2),
                        "clients_total": round(sum(c.cpu_seconds for c in procs), 2),
                        "server_user_sys": [round(server.cpu_user, 2), round(server.cpu_sys, 2)],
                        "clients_user_sys": [round(sum(c.cpu_user for c in procs), 2),
                                             round(sum(c.cpu_sys for c in procs), 2)]},
        "logs": tmp,
    }


def machine():
    # The 1/5/15-minute load when the run ended: seconds compare only between runs made at a load
    # near the run's own (its 10 clients on 2 cores keep it at ~10).
    return {"cpus": os.cpu_count(), "arch": platform.machine(), "date": time.strftime("%Y-%m-%d"),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}


def write(path, result):
    """Writes the JSON whole or not at all (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
