# The queue workload for Python: 100,000 small values from one thread to
# the main thread through a queue.Queue. usage: python3 python.py
import queue, threading, time

N = 100000
q = queue.Queue()

def produce():
    for i in range(1, N + 1):
        q.put(i)
    q.put(None)

t0 = time.perf_counter()
threading.Thread(target=produce).start()
count = total = 0
while True:
    v = q.get()
    if v is None:
        break
    count += 1
    total += v
dt = time.perf_counter() - t0
assert count == N and total == N * (N + 1) // 2
print("values_per_s", N / dt)
