#!/usr/bin/env python3
"""Load generator for an OpenAI-compatible server (inferno serve, llama-server, vLLM): at each concurrency level,
that many clients each send --requests streamed /v1/completions requests of a --prompt-words prompt and --max-tokens
new tokens (ignore_eos, so every request decodes the same length), one after another. Reports aggregate output
tok/s, median and p95 time to first token, and median time per output token after the first. Standard library only.

    tools/serve-load.py --url http://127.0.0.1:8080 --concurrency 1,4,8 --requests 2 --max-tokens 64
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

WORDS = ("the jury said that the city of atlanta had been praised for the manner in which the election was "
         "conducted and that the grand jury commented on a number of other topics").split()


def prompt_text(words, salt):
    # A different start for each request, so no server can answer from its prefix cache alone.
    return " ".join([str(salt)] + [WORDS[(salt + i) % len(WORDS)] for i in range(words - 1)])


def one_request(url, body):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    first = None
    chunks = 0
    usage = None
    buf = b""
    while True:
        data = resp.read1(65536)
        if not data:
            break
        buf += data
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                msg = json.loads(payload)
                if msg.get("usage"):
                    usage = msg["usage"]
                for choice in msg.get("choices", []):
                    if choice.get("text"):
                        chunks += 1
                        if first is None:
                            first = time.perf_counter()
    end = time.perf_counter()
    conn.close()
    tokens = usage["completion_tokens"] if usage and usage.get("completion_tokens") else chunks
    return {"ttft": (first or end) - start, "latency": end - start, "tokens": tokens,
            "tpot": (end - (first or end)) / max(1, tokens - 1)}


def level(url, model, clients, requests, words, max_tokens, salt0):
    results, errors = [], []
    lock = threading.Lock()

    def client(c):
        for r in range(requests):
            body = {"model": model, "prompt": prompt_text(words, salt0 + c * requests + r), "max_tokens": max_tokens,
                    "temperature": 0, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}
            try:
                res = one_request(url, body)
                with lock:
                    results.append(res)
            except Exception as e:  # reported, and the level fails
                with lock:
                    errors.append(str(e))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} requests failed at concurrency {clients}: {errors[0]}")
    ttfts = sorted(r["ttft"] for r in results)
    p95 = ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))]
    return {"concurrency": clients, "requests": len(results), "output_tokens": sum(r["tokens"] for r in results),
            "tok_per_s": sum(r["tokens"] for r in results) / wall, "ttft_median_s": statistics.median(ttfts),
            "ttft_p95_s": p95, "tpot_median_s": statistics.median(r["tpot"] for r in results), "seconds": wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="default")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--requests", type=int, default=2, help="requests per client at each level")
    ap.add_argument("--prompt-words", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = []
    for i, c in enumerate(int(x) for x in a.concurrency.split(",")):
        rows.append(level(a.url, a.model, c, a.requests, a.prompt_words, a.max_tokens, 1000 * (i + 1)))
    if a.json:
        print(json.dumps(rows))
        return
    print("clients  requests  tok/s   ttft median  ttft p95  tpot median")
    for r in rows:
        print(f"{r['concurrency']:7d}  {r['requests']:8d}  {r['tok_per_s']:6.1f}  {r['ttft_median_s']:9.3f} s "
              f"{r['ttft_p95_s']:7.3f} s  {1000 * r['tpot_median_s']:8.1f} ms")


if __name__ == "__main__":
    main()
