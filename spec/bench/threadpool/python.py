# One workload of the pool benchmark, for Python's ThreadPoolExecutor(2)
# or, with "process", ProcessPoolExecutor(2).
# usage: python3 python.py w1|w2|w3|w3seq|w4|w4drop|mem [process]
# BENCH_WORKERS sets the number of workers (default 2). cpu_us_per_task
# (thread pools): CPU time of the whole process, user + system.
import os, resource, sys, threading, time
from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor

which = sys.argv[1]
Pool = ProcessPoolExecutor if sys.argv[2:] == ["process"] else ThreadPoolExecutor
W = int(os.environ.get("BENCH_WORKERS", "2"))
W3_ROUNDS = 5
now = time.perf_counter
clock = time.process_time

def cpu(c0, n):
    print("cpu_us_per_task", (clock() - c0) / n * 1e6)

def inc(x):
    return x + 1

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def scale(a):
    return [v * 2.0 for v in a]

if which == "w1":
    N = 100000
    with Pool(W) as ex:
        t0, c0 = now(), clock()
        fs = [ex.submit(inc, i) for i in range(1, N + 1)]
        s = sum(f.result() for f in fs)
        dt = now() - t0
        cpu(c0, N)
    assert s == N * (N + 1) // 2 + N
    print("tasks_per_s", N / dt)
elif which == "w2":
    N = 10000
    with Pool(W) as ex:
        for i in range(200):
            ex.submit(inc, i).result()
        lat = []
        c0 = clock()
        for i in range(N):
            t0 = now()
            assert ex.submit(inc, i).result() == i + 1
            lat.append(now() - t0)
        cpu(c0, N)
    lat.sort()
    print("median_us", lat[N // 2] * 1e6)
    print("p99_us", lat[int(N * 0.99)] * 1e6)
elif which in ("w3", "w3seq"):
    # the fastest of W3_ROUNDS rounds, as ours.lua measures
    def best_of(run):
        best = None
        for _ in range(W3_ROUNDS):
            t0, c0 = now(), clock()
            run()
            dt = now() - t0
            if best is None or dt < best[0]:
                best = (dt, clock() - c0)
        print("seconds", best[0])
        print("cpu_seconds", best[1])
    def seq():
        for _ in range(8):
            assert fib(27) == 196418
    if which == "w3seq":
        best_of(seq)
    else:
        with Pool(W) as ex:
            ex.submit(inc, 1).result()
            ex.submit(inc, 1).result()
            def par():
                fs = [ex.submit(fib, 27) for _ in range(8)]
                for f in fs:
                    assert f.result() == 196418
            best_of(par)
elif which in ("w4", "w4drop"):
    # w4drop lets go of each future once its result is read (ours.lua)
    N, M = 2000, 1000
    xs = [i * 0.5 for i in range(1, M + 1)]
    minflt = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with Pool(W) as ex:
        t0, c0, f0 = now(), clock(), minflt()
        fs = [ex.submit(scale, xs) for _ in range(N)]
        for i in range(N):
            assert fs[i].result()[-1] == M * 1.0
            if which == "w4drop":
                fs[i] = None
        dt = now() - t0
        cpu(c0, N)
        print("faults_per_task", (minflt() - f0) / N)
    print("mb_per_s", N * M * 8 * 2 / dt / 1e6)
elif which == "mem":
    # 1,000,000 tasks queued behind both workers, held on a gate
    def rss_kb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    N = 1000000
    gate = threading.Event()
    ex = ThreadPoolExecutor(2)
    ex.submit(gate.wait)
    ex.submit(gate.wait)
    before = rss_kb()
    fs = [ex.submit(inc, i) for i in range(1, N + 1)]
    after = rss_kb()
    print("bytes_per_pending_future", (after - before) * 1024 / N)
    gate.set()
    ex.shutdown(True)
